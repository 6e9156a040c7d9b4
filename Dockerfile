FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY services services
COPY examples examples
COPY deploy deploy
RUN pip install --no-cache-dir .
ENTRYPOINT ["infusion-monitor"]

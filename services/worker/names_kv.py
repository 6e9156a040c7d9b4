"""Keys in the state bucket."""

from ..runtime.names import patient_token

META_KEY = "meta"


def patient_key(patient_id: str) -> str:
    return f"p.{patient_token(patient_id)}"

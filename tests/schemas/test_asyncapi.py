"""The committed AsyncAPI document is what the code generates (regenerate with
``python -m infusion_monitor.contract_doc``)."""

import json

from infusion_monitor.contract_doc import PATH, asyncapi_document, render


def test_committed_asyncapi_matches_the_code():
    assert PATH.read_text() == render(), "schemas/asyncapi.json drifted: run python -m infusion_monitor.contract_doc"


def test_asyncapi_lists_the_subjects():
    doc = asyncapi_document()
    addresses = {c["address"] for c in doc["channels"].values()}
    assert "im.in.{patient}.vitals.recorded" in addresses
    assert "im.alert.{patient}.alert.raised" in addresses
    assert "im.dlq.{service}" in addresses
    assert json.dumps(doc)  # serialisable

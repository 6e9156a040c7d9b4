"""The LOINC codes the lab rules read, and the UCUM units accepted for each (``clinical-rules.md``,
"Laboratory results"). Values are converted to one canonical unit per code, exactly (decimal)."""

from __future__ import annotations

from decimal import Decimal

LYMPHOCYTES, MONOCYTES, EOSINOPHILS, BASOPHILS, NUCLEATED_RBC = "731-0", "742-7", "711-2", "704-7", "771-6"
#: the generic "[#/volume] in Blood" counts labs send beside (or instead of) the automated-count codes (L1)
LYMPHOCYTES_GENERIC, MONOCYTES_GENERIC, EOSINOPHILS_GENERIC, BASOPHILS_GENERIC = (
    "26474-7", "26484-6", "26449-9", "26444-0")
NEUTROPHIL_CODES = frozenset({"751-8", "26499-4"})
PLATELET_CODES = frozenset({"777-3", "26515-7"})
ALT, AST, BILIRUBIN, ALP = "1742-6", "1920-8", "1975-2", "6768-6"
BILIRUBIN_MOLAR = "14631-6"  # total bilirubin [Moles/volume]: what SI labs send (L6)
BILIRUBIN_CODES = frozenset({BILIRUBIN, BILIRUBIN_MOLAR})
ANTIBODY = "58012-6"

#: L1/L2: counts natalizumab raises while on treatment
EXPECTED_RISE_CODES = frozenset({LYMPHOCYTES, MONOCYTES, EOSINOPHILS, BASOPHILS, NUCLEATED_RBC, LYMPHOCYTES_GENERIC,
                                 MONOCYTES_GENERIC, EOSINOPHILS_GENERIC, BASOPHILS_GENERIC})
TRANSAMINASES = frozenset({ALT, AST})

NAMES = {
    LYMPHOCYTES: "lymphocytes", MONOCYTES: "monocytes", EOSINOPHILS: "eosinophils",
    BASOPHILS: "basophils", NUCLEATED_RBC: "nucleated red cells", LYMPHOCYTES_GENERIC: "lymphocytes",
    MONOCYTES_GENERIC: "monocytes", EOSINOPHILS_GENERIC: "eosinophils", BASOPHILS_GENERIC: "basophils",
    **dict.fromkeys(NEUTROPHIL_CODES, "neutrophils"), **dict.fromkeys(PLATELET_CODES, "platelets"),
    ALT: "ALT", AST: "AST", **dict.fromkeys(BILIRUBIN_CODES, "total bilirubin"), ALP: "ALP",
    ANTIBODY: "anti-natalizumab antibodies",
}

_ONE, _MILLI = Decimal(1), Decimal("0.001")
COUNT_UNITS = {"10*9/L": _ONE, "10*3/uL": _ONE, "10*3/mm3": _ONE, "/uL": _MILLI, "/mm3": _MILLI}
BILIRUBIN_UNITS = {"umol/L": _ONE, "mg/dL": Decimal("17.1")}
ENZYME_UNITS = {"U/L": _ONE, "[IU]/L": _ONE}

#: code -> {accepted unit: factor to the canonical (first listed) unit}
UNITS: dict[str, dict[str, Decimal]] = {
    **dict.fromkeys(EXPECTED_RISE_CODES | NEUTROPHIL_CODES | PLATELET_CODES, COUNT_UNITS),
    **dict.fromkeys(BILIRUBIN_CODES, BILIRUBIN_UNITS),
    ALT: ENZYME_UNITS,
    AST: ENZYME_UNITS,
    ALP: ENZYME_UNITS,
}


#: codes whose configured default upper limit of normal is the one of another code (same analyte)
DEFAULT_ULN_OF = {BILIRUBIN_MOLAR: BILIRUBIN}


class UnitError(ValueError):
    pass


def canonical_unit(code: str) -> str:
    return next(iter(UNITS[code]))


def to_canonical(code: str, value: float, unit: str | None) -> Decimal:
    """The value in the code's canonical unit; no unit means the canonical one."""
    table = UNITS[code]
    factor = table.get(unit if unit is not None else canonical_unit(code))
    if factor is None:
        raise UnitError(f"unit {unit!r} is not accepted for {code} (accepted: {', '.join(table)})")
    return Decimal(repr(value)) * factor

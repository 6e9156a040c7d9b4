"""How vendors spell the same term: MDC reference ids and UCUM units, normalised for matching.

- MDC reference ids arrive with spaces instead of underscores (``MDC PULS_OXIM_SAT_O2``), in
  any case, and with the ``MDCX_`` prefix of the trial-implementation vocabularies (IHE PCD
  IPEC, the Rosetta terms not yet in ISO/IEEE 11073-10101): all are one term.
- UCUM units are compared with annotations removed (``{beat}/min`` is ``/min``, ``{cells}/uL``
  is ``/uL``), the ``x10*9/L`` spelling is ``10*9/L`` and the micro sign is ``u``.
"""

from __future__ import annotations

import re

_SPACES = re.compile(r"[\s_]+")
_ANNOTATION = re.compile(r"\{[^{}]*\}")
_TIMES_POWER = re.compile(r"^[xX×]\s*(?=10[*^])")


def mdc_term(text: str) -> str:
    """``MDCX_EVT_PUMP_DELIV_START``, ``mdc evt pump deliv start`` -> ``MDC_EVT_PUMP_DELIV_START``.
    A numeric code comes back stripped; anything else upper-cased and stripped."""
    term = _SPACES.sub("_", text.strip().upper()).strip("_")
    if term.startswith("MDCX_"):
        term = "MDC_" + term[len("MDCX_"):]
    return term


def ucum_key(text: str) -> str:
    """The UCUM unit with annotations removed, for comparison: ``{beats}/min`` -> ``/min``,
    ``{cells}/uL`` -> ``/uL``, ``x10*9/L`` -> ``10*9/L``, ``1/min`` -> ``/min``, ``{beats}`` -> ``1``.
    Case is kept (UCUM is case-sensitive); callers compare case-insensitively where the
    spellings they accept cannot clash."""
    unit = text.strip().replace("µ", "u").replace("μ", "u")
    unit = _ANNOTATION.sub("", unit).strip()
    unit = _TIMES_POWER.sub("", unit).replace("10^", "10*")
    if unit.startswith("1/"):
        unit = unit[1:]
    return unit or ("1" if text.strip() else "")


def match_unit(spellings: list[str], accepted: dict[str, object]) -> str | None:
    """The accepted unit (a key of ``accepted``) one of ``spellings`` names, case-insensitively
    and with UCUM annotations ignored; ``None`` when none does."""
    by_key = {ucum_key(k).upper(): k for k in accepted}
    for spelling in spellings:
        for candidate in (spelling.strip().upper(), ucum_key(spelling).upper()):
            if candidate in by_key:
                return by_key[candidate]
    return None

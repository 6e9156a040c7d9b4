#!/usr/bin/env python3
"""Deterministic example-data generator: one clinic day for infusion-monitor.

Writes ``clinic-day.jsonl`` next to this script: one inbound event (see
``spec/contract.md``) per line, in arrival order, for 2025-03-03 at two sites
("site-north" chairs pump-N01..N08, "site-south" chairs pump-S01..S06).

Standard library only, no randomness beyond a seeded ``random.Random`` per
session, so the output is byte-identical on every run:

    python3 examples/generate_clinic_day.py

Arrival order = events sorted by ``occurred_at`` (ties keep generation order),
except two deliberately LATE vitals readings, which are placed after events up
to 10 minutes later than their own ``occurred_at`` (see ``LATE_BY``).

Scenarios (see SESSIONS and the per-scenario builders below):
  1  ten routine, uneventful sessions (normal vitals, no symptoms)
  2  mild reaction: urticaria + pruritus at start+35 with normal vitals (R12),
     infusion stopped at start+39, vitals continue through the observation hour
  3  severe reaction: flushing + dyspnea at start+25 (R10), then at start+29
     systolic 82, SpO2 90 and wheeze (R7/R8, escalation), stopped at start+31,
     recovering vitals afterwards
  4  monitoring gap: no vitals from start+10 to start+60 (M1 due at start+40)
  5  pregnant patient, routine session (P3)
  6  16-year-old patient, routine session (P1)
  7  67-year-old patient (P2) and a lactating patient (P4), routine sessions
  8  concomitant "Interferon beta-1a" (P6), routine session
  9  non-allergic infusion reaction: headache + 38.2 degC at start+40 (R13)
  10 re-exposure: previous infusion on record 2024-11-03 (120 days earlier,
     at the very top of the log), today's start raises R17
  11 adverse_event.reported: "infection" (A2, afternoon, no session_id) and
     "depression" (A4, during the lactating patient's observation hour)
  12 pump feed dropped: one session never gets infusion.ended (M2 at start+180)
  13 clock.tick events at 18:00Z and 20:00Z
"""

import json
import os
import random
from datetime import date, datetime, timedelta, timezone

DAY = date(2025, 3, 3)
OUT_NAME = "clinic-day.jsonl"
LATE_BY = timedelta(minutes=10)  # how long after its own time a late event arrives

# P6's configured default list (clinical-rules.md); only the P6 patient may match it.
IMMUNOMODULATORS = (
    "interferon", "glatiramer", "fingolimod", "siponimod", "ozanimod", "ponesimod",
    "teriflunomide", "fumarate", "cladribine", "mitoxantrone", "ocrelizumab",
    "ofatumumab", "ublituximab", "alemtuzumab", "rituximab", "azathioprine",
    "methotrexate", "mycophenolate", "cyclophosphamide", "ciclosporin", "tacrolimus",
    "infliximab", "adalimumab", "etanercept", "certolizumab", "golimumab",
)

# ---------------------------------------------------------------------------
# Patients: pseudonymous keys only. Profile fields as in contract.md.
# treatment_start dates are chosen so that no routine antibody due date
# (anchor + k*84 days) falls on 2025-03-03 or 2025-03-04 (inside the replay
# horizon); this is asserted below.
# ---------------------------------------------------------------------------
PATIENTS = {
    # routine patients (scenario 1)
    "pk-7f3a91": dict(birth_date="1984-06-12", sex="F", treatment_start="2023-05-26",
                      concomitant_therapies=["Vitamin D3"]),
    "pk-2c81d4": dict(birth_date="1979-11-03", sex="M", treatment_start="2024-07-20"),
    "pk-e12f60": dict(birth_date="1975-09-08", sex="M", treatment_start="2023-12-05",
                      concomitant_therapies=["Baclofen", "Vitamin D3"]),
    "pk-08d7ac": dict(birth_date="1988-12-21", sex="F", treatment_start="2024-04-26"),
    "pk-a63b19": dict(birth_date="1996-07-04", sex="F", treatment_start="2024-10-12"),
    "pk-4f7e02": dict(birth_date="1970-03-29", sex="F",
                      concomitant_therapies=["Fampridine", "Vitamin D3"]),
    "pk-d95c8e": dict(birth_date="1985-10-10", sex="M", treatment_start="2025-02-02",
                      prior_immunosuppressant=True),
    "pk-903bfa": dict(birth_date="1999-10-30", sex="F", treatment_start="2024-09-14"),
    "pk-47e8d1": dict(birth_date="1972-08-08", sex="F", treatment_start="2023-02-27",
                      concomitant_therapies=["Oxybutynin"]),
    "pk-c3b062": dict(birth_date="1989-04-17", sex="M", treatment_start="2024-06-20"),
    # scenario 2: mild reaction (R12)
    "pk-b4e6a0": dict(birth_date="1990-02-27", sex="F", treatment_start="2024-11-07"),
    # scenario 3: anaphylaxis (R10 -> R7/R8)
    "pk-91d2f7": dict(birth_date="1987-08-19", sex="F", treatment_start="2025-01-05",
                      prior_immunosuppressant=True),
    # scenario 4: monitoring gap (M1)
    "pk-6c1e95": dict(birth_date="1981-02-02", sex="M", treatment_start="2023-08-16"),
    # scenario 5: pregnant (P3)
    "pk-16ab73": dict(birth_date="1994-05-16", sex="F", pregnant=True, lactating=False,
                      treatment_start="2024-02-29"),
    # scenario 6: 16 years old on 2025-03-03 (P1)
    "pk-f2403d": dict(birth_date="2008-09-14", sex="F", treatment_start="2025-01-03"),
    # scenario 7: 67 years old (P2) ...
    "pk-3e0c5b": dict(birth_date="1957-06-11", sex="M", treatment_start="2022-11-09",
                      concomitant_therapies=["Amlodipine"]),
    # ... and lactating (P4); also reports depression (A4, scenario 11)
    "pk-b80f27": dict(birth_date="1991-12-05", sex="F", pregnant=False, lactating=True,
                      treatment_start="2024-05-25"),
    # scenario 8: concomitant interferon beta-1a (P6)
    "pk-c7a214": dict(birth_date="1982-04-30", sex="F", treatment_start="2024-12-07",
                      concomitant_therapies=["Interferon beta-1a", "Vitamin D3"]),
    # scenario 9: non-allergic infusion reaction (R13)
    "pk-2a5d6c": dict(birth_date="1977-07-23", sex="F", treatment_start="2025-02-01"),
    # scenario 10: re-exposure after 120 days (R17)
    "pk-5b9e38": dict(birth_date="1993-01-15", sex="F", treatment_start="2024-05-19"),
    # scenario 12: pump feed dropped, no infusion.ended (M2)
    "pk-e7c341": dict(birth_date="1986-03-14", sex="M", treatment_start="2024-02-02",
                      prior_immunosuppressant=False),
}
P6_PATIENT = "pk-c7a214"

# ---------------------------------------------------------------------------
# Sessions of 2025-03-03: (chair, seq, patient, start HH:MM, infusion_number,
# end offset in minutes or None, outcome, baseline minutes before start, kind)
# ---------------------------------------------------------------------------
SESSIONS = [
    # --- site-north ---
    ("N01", 1, "pk-7f3a91", "08:00", 24, 61, "completed", 10, "routine"),
    ("N02", 1, "pk-2c81d4", "08:15", 9, 63, "completed", 12, "routine_late"),
    ("N03", 1, "pk-b4e6a0", "08:30", 5, 39, "stopped", 8, "mild_reaction"),
    ("N04", 1, "pk-91d2f7", "09:00", 3, 31, "stopped", 15, "anaphylaxis"),
    ("N05", 1, "pk-3e0c5b", "09:30", 31, 62, "completed", 6, "routine"),       # P2
    ("N06", 1, "pk-c7a214", "10:00", 4, 60, "completed", 18, "routine"),       # P6
    ("N01", 2, "pk-08d7ac", "10:30", 12, 62, "completed", 9, "routine"),
    ("N07", 1, "pk-5b9e38", "10:45", 8, 64, "completed", 11, "routine"),       # R17
    ("N08", 1, "pk-e12f60", "11:15", 17, 59, "completed", 7, "routine"),
    ("N02", 2, "pk-a63b19", "12:00", 6, 61, "completed", 14, "routine"),
    ("N03", 2, "pk-4f7e02", "13:00", 40, 62, "completed", 10, "routine"),
    ("N04", 2, "pk-d95c8e", "14:00", 2, 63, "completed", 12, "routine"),
    # --- site-south ---
    ("S01", 1, "pk-16ab73", "08:00", 14, 62, "completed", 13, "routine"),      # P3
    ("S02", 1, "pk-f2403d", "08:20", 3, 60, "completed", 9, "routine"),        # P1
    ("S03", 1, "pk-6c1e95", "09:10", 21, 63, "completed", 10, "gap"),
    ("S04", 1, "pk-b80f27", "09:45", 11, 61, "completed", 16, "routine"),      # P4
    ("S05", 1, "pk-2a5d6c", "10:30", 2, 63, "completed", 8, "r13"),
    ("S06", 1, "pk-e7c341", "11:00", 15, None, None, 12, "no_end"),
    ("S03", 2, "pk-c3b062", "12:00", 10, 60, "completed", 11, "routine_late"),
    ("S01", 2, "pk-903bfa", "12:30", 7, 62, "completed", 5, "routine"),
    ("S02", 2, "pk-47e8d1", "13:30", 27, 64, "completed", 20, "routine"),
]

# Scenario 10: the previous infusion on record for pk-5b9e38, 120 days earlier.
HISTORY = dict(patient="pk-5b9e38", session_id="ses-20241103-N07-1", site="site-north",
               pump="pump-N07", start=datetime(2024, 11, 3, 10, 40, tzinfo=timezone.utc),
               end_offset=62, infusion_number=7)

# Scenario 11: adverse events.
ADVERSE_EVENTS = [
    # A4: reported during the lactating patient's observation hour (S04-1).
    dict(patient="pk-b80f27", at="11:30", category="depression",
         session_id="ses-20250303-S04-1",
         note="Low mood and anhedonia for three weeks; PHQ-9 score 14; GP informed"),
    # A2: afternoon phone call from a morning routine patient, no session.
    dict(patient="pk-7f3a91", at="15:20", category="infection", session_id=None,
         note="Phone call: dysuria and fever since yesterday; urine culture requested"),
]

# Scenario 13: clock ticks at the end of the day.
TICKS = ["18:00", "20:00"]


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def at(hhmm, day=DAY):
    h, m = hhmm.split(":")
    return datetime(day.year, day.month, day.day, int(h), int(m), tzinfo=timezone.utc)


def ts(dt):
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def clamp(v, lo, hi):
    return max(lo, min(hi, v))


def wobble(rnd, spread):
    """A deterministic value in [-spread, +spread]."""
    return (rnd.random() * 2.0 - 1.0) * spread


class VitalsModel:
    """Per-session normal vitals, varying slightly from reading to reading."""

    def __init__(self, seed):
        self.rnd = random.Random(seed)
        r = self.rnd
        self.sys = 112 + round(r.random() * 20)       # 112..132
        self.dia = 68 + round(r.random() * 14)        # 68..82
        self.hr = 64 + round(r.random() * 20)         # 64..84
        self.spo2 = 96 + round(r.random() * 2)        # 96..98
        self.rr = 13 + round(r.random() * 3)          # 13..16
        self.temp = 36.6 + round(r.random() * 3) / 10  # 36.6..36.9

    def reading(self):
        r = self.rnd
        return {
            "systolic_mmhg": clamp(self.sys + round(wobble(r, 6)), 105, 140),
            "diastolic_mmhg": clamp(self.dia + round(wobble(r, 4)), 65, 90),
            "heart_rate_bpm": clamp(self.hr + round(wobble(r, 5)), 60, 95),
            "spo2_pct": clamp(self.spo2 + round(wobble(r, 1)), 95, 99),
            "respiratory_rate_bpm": clamp(self.rr + round(wobble(r, 1)), 12, 18),
            "temperature_c": round(clamp(self.temp + wobble(r, 0.2), 36.4, 37.2), 1),
        }


BP_HR = ("systolic_mmhg", "diastolic_mmhg", "heart_rate_bpm")


def default_readings(end_off):
    """Monitor cycle every 15 min from start through the observation hour.

    The last reading is at max(end + 60, start + 120) (the us reaction window);
    when that is off the 15-minute grid the nurse charts a discharge reading.
    Returns a list of (offset_min, producer, overrides, symptoms).
    """
    last = max(end_off + 60, 120)
    rows = [(k, "mon", {}, None) for k in range(15, last + 1, 15)]
    if last % 15:
        rows.append((last, "nurse", {}, None))
    return rows


# ---------------------------------------------------------------------------
# per-scenario reading schedules (offsets in minutes from infusion start)
# ---------------------------------------------------------------------------
def readings_for(kind, end_off):
    if kind in ("routine", "routine_late"):
        # Scenario 1 (and 5-8, 10): uneventful, normal vitals, no symptoms.
        return default_readings(end_off)

    if kind == "mild_reaction":
        # Scenario 2: R12 (high) at start+35: skin signs only, normal vitals.
        rows = default_readings(end_off)
        rows.append((35, "nurse", {}, ["urticaria", "pruritus"]))
        return rows

    if kind == "anaphylaxis":
        # Scenario 3: R10 (critical, moderate) at start+25, escalating to
        # R7/R8 (critical, severe) at start+29; monitor in 5-minute stat mode
        # afterwards, recovering.
        return [
            (15, "mon", {}, None),
            (25, "nurse", dict(systolic_mmhg=114, diastolic_mmhg=70, heart_rate_bpm=104,
                               spo2_pct=95, respiratory_rate_bpm=20, temperature_c=36.9),
             ["flushing", "dyspnea"]),
            (29, "nurse", dict(systolic_mmhg=82, diastolic_mmhg=48, heart_rate_bpm=122,
                               spo2_pct=90, respiratory_rate_bpm=26, temperature_c=36.9),
             ["wheeze"]),
            (35, "mon", dict(systolic_mmhg=94, diastolic_mmhg=58, heart_rate_bpm=114,
                             spo2_pct=93, respiratory_rate_bpm=24, temperature_c=36.9), None),
            (40, "mon", dict(systolic_mmhg=100, diastolic_mmhg=62, heart_rate_bpm=108,
                             spo2_pct=94, respiratory_rate_bpm=22, temperature_c=36.9), None),
            (45, "mon", dict(systolic_mmhg=106, diastolic_mmhg=66, heart_rate_bpm=102,
                             spo2_pct=95, respiratory_rate_bpm=20, temperature_c=36.8), None),
            (50, "mon", dict(systolic_mmhg=110, diastolic_mmhg=68, heart_rate_bpm=97,
                             spo2_pct=96, respiratory_rate_bpm=19, temperature_c=36.8), None),
            (55, "mon", dict(systolic_mmhg=113, diastolic_mmhg=70, heart_rate_bpm=94,
                             spo2_pct=96, respiratory_rate_bpm=18, temperature_c=36.8), None),
            (60, "mon", dict(systolic_mmhg=116, diastolic_mmhg=72, heart_rate_bpm=90,
                             spo2_pct=97, respiratory_rate_bpm=17, temperature_c=36.8), None),
            (75, "mon", dict(systolic_mmhg=119, diastolic_mmhg=74, heart_rate_bpm=86,
                             spo2_pct=97, respiratory_rate_bpm=16, temperature_c=36.7), None),
            (90, "mon", dict(systolic_mmhg=121, diastolic_mmhg=75, heart_rate_bpm=82,
                             spo2_pct=97, respiratory_rate_bpm=16, temperature_c=36.7), None),
            (105, "mon", dict(systolic_mmhg=122, diastolic_mmhg=76, heart_rate_bpm=80,
                              spo2_pct=98, respiratory_rate_bpm=15, temperature_c=36.7), None),
            (120, "mon", dict(systolic_mmhg=123, diastolic_mmhg=77, heart_rate_bpm=78,
                              spo2_pct=98, respiratory_rate_bpm=15, temperature_c=36.7), None),
        ]

    if kind == "gap":
        # Scenario 4: monitor disconnected after the start+10 reading; nothing
        # charted until start+60 (50 minutes). M1 is due at start+40.
        return [
            (10, "mon", {}, None),
            (60, "nurse", {}, None),
            (75, "mon", {}, None),
            (90, "mon", {}, None),
            (105, "mon", {}, None),
            (120, "mon", {}, None),
            (end_off + 60, "nurse", {}, None),
        ]

    if kind == "r13":
        # Scenario 9: headache and 38.2 degC at start+40, no skin or respiratory
        # signs (R13, medium); fever settles, infusion completed.
        rows = default_readings(end_off)
        rows.append((40, "nurse", dict(temperature_c=38.2, heart_rate_bpm=96), ["headache"]))
        fever = {45: (37.9, 92), 60: (37.7, 88), 75: (37.5, 85), 90: (37.3, 82),
                 105: (37.1, 80)}
        out = []
        for off, prod, ov, sym in rows:
            if off in fever:
                ov = dict(ov, temperature_c=fever[off][0], heart_rate_bpm=fever[off][1])
            out.append((off, prod, ov, sym))
        return out

    if kind == "no_end":
        # Scenario 12: the infusion actually ran ~61 min and the patient was
        # observed for an hour, but the pump feed dropped: no infusion.ended.
        return default_readings(61)

    raise ValueError(kind)


# ---------------------------------------------------------------------------
# event builders
# ---------------------------------------------------------------------------
def build_events():
    events = []  # (occurred_at datetime, seq, event dict, late?)

    def add(dt, ev, late=False):
        events.append((dt, len(events), ev, late))

    # Scenario 10: previous infusion on record (2024-11-03), top of the log.
    h = HISTORY
    hsid = h["session_id"]
    add(h["start"], {
        "type": "infusion.started", "event_id": "pump-" + hsid[4:] + "-start",
        "occurred_at": ts(h["start"]), "patient_id": h["patient"],
        "session_id": hsid, "site_id": h["site"], "pump_id": h["pump"],
        "drug": "natalizumab", "dose_mg": 300, "infusion_number": h["infusion_number"],
    })
    hend = h["start"] + timedelta(minutes=h["end_offset"])
    add(hend, {
        "type": "infusion.ended", "event_id": "pump-" + hsid[4:] + "-end",
        "occurred_at": ts(hend), "patient_id": h["patient"],
        "session_id": hsid, "outcome": "completed",
    })

    # Profiles: registration sync early in the morning, one a minute from 07:00.
    profile_time = {}
    for i, (chair, seq, pid, start, *_rest) in enumerate(
            sorted(SESSIONS, key=lambda s: (s[3], s[0]))):
        profile_time[pid] = at("07:00") + timedelta(minutes=i)
    for pid, prof in PATIENTS.items():
        dt = profile_time[pid]
        ev = {"type": "patient.profile", "event_id": "ehr-adt-" + pid[3:] + "-20250303",
              "occurred_at": ts(dt), "patient_id": pid}
        ev.update(prof)
        add(dt, ev)

    # Sessions.
    for idx, (chair, seq, pid, start, inf_no, end_off, outcome, base_before, kind) \
            in enumerate(SESSIONS):
        sid = "ses-%s-%s-%d" % (DAY.strftime("%Y%m%d"), chair, seq)
        site = "site-north" if chair.startswith("N") else "site-south"
        t0 = at(start)
        model = VitalsModel(20250303 * 100 + idx)

        # Baseline: charted by the nurse 5-20 min before start, all six
        # readings, no session_id (a baseline candidate, matched by patient).
        bdt = t0 - timedelta(minutes=base_before)
        ev = {"type": "vitals.recorded",
              "event_id": "nurse-%s-%s" % (sid[4:], bdt.strftime("%H%M")),
              "occurred_at": ts(bdt), "patient_id": pid}
        ev.update(model.reading())
        add(bdt, ev)

        add(t0, {
            "type": "infusion.started", "event_id": "pump-" + sid[4:] + "-start",
            "occurred_at": ts(t0), "patient_id": pid, "session_id": sid,
            "site_id": site, "pump_id": "pump-" + chair, "drug": "natalizumab",
            "dose_mg": 300, "infusion_number": inf_no,
        })

        rows = sorted(readings_for(kind, end_off), key=lambda r: r[0])
        late_offset = None
        if kind == "routine_late":
            # One deliberately late reading in this session (arrives 10 min
            # after its own time, after later readings of other chairs).
            late_offset = 45 if chair == "N02" else 30
        for n, (off, producer, overrides, symptoms) in enumerate(rows):
            dt = t0 + timedelta(minutes=off)
            values = model.reading()
            values.update(overrides)
            # Occasionally the monitor cycle charts only blood pressure and
            # heart rate (cuff + pulse, no SpO2 probe / thermometer reading).
            if producer == "mon" and not overrides and not symptoms and off == 75 \
                    and idx % 4 == 1:
                values = {k: values[k] for k in BP_HR}
            ev = {"type": "vitals.recorded",
                  "event_id": "%s-%s-%s" % (producer, sid[4:], dt.strftime("%H%M")),
                  "occurred_at": ts(dt), "patient_id": pid, "session_id": sid}
            ev.update(values)
            if symptoms:
                ev["symptoms"] = list(symptoms)
            add(dt, ev, late=(off == late_offset))

        if end_off is not None:
            edt = t0 + timedelta(minutes=end_off)
            add(edt, {
                "type": "infusion.ended", "event_id": "pump-" + sid[4:] + "-end",
                "occurred_at": ts(edt), "patient_id": pid, "session_id": sid,
                "outcome": outcome,
            })
        # else: scenario 12, the pump feed dropped; no infusion.ended at all.

    # Scenario 11: adverse events.
    for ae in ADVERSE_EVENTS:
        dt = at(ae["at"])
        ev = {"type": "adverse_event.reported",
              "event_id": "ehr-ae-%s-%s" % (ae["patient"][3:], dt.strftime("%Y%m%dT%H%MZ")),
              "occurred_at": ts(dt), "patient_id": ae["patient"],
              "category": ae["category"]}
        if ae["session_id"]:
            ev["session_id"] = ae["session_id"]
        ev["note"] = ae["note"]
        add(dt, ev)

    # Scenario 13: clock ticks.
    for hhmm in TICKS:
        dt = at(hhmm)
        add(dt, {"type": "clock.tick",
                 "event_id": "tick-" + dt.strftime("%Y%m%dT%H%MZ"),
                 "occurred_at": ts(dt)})
    return events


def arrival_order(events):
    """Chronological, except late events arrive LATE_BY after their own time."""
    on_time = sorted((e for e in events if not e[3]), key=lambda e: (e[0], e[1]))
    late = sorted((e for e in events if e[3]), key=lambda e: (e[0], e[1]))
    out = list(on_time)
    for e in late:
        arrival = e[0] + LATE_BY
        pos = 0
        for i, o in enumerate(out):
            if o[0] <= arrival:
                pos = i + 1
        assert any(o[0] > e[0] for o in out[:pos]), "late event must follow later events"
        out.insert(pos, e)
    return [e[2] for e in out]


def check(lines_events):
    ids = [e["event_id"] for e in lines_events]
    assert len(ids) == len(set(ids)), "duplicate event_id"
    prefixes = ("ehr-", "pump-", "mon-", "nurse-", "lis-", "tick-")
    assert all(i.startswith(prefixes) for i in ids)
    for pid, prof in PATIENTS.items():
        ts_ = prof.get("treatment_start")
        if ts_:
            start = date.fromisoformat(ts_)
            for d in (DAY, DAY + timedelta(days=1)):
                assert (d - start).days % 84 != 0, (pid, "routine due inside horizon")
        meds = [m.lower() for m in prof.get("concomitant_therapies", [])]
        hit = any(name in m for m in meds for name in IMMUNOMODULATORS)
        assert hit == (pid == P6_PATIENT), pid
    assert len(PATIENTS) == len({s[2] for s in SESSIONS}) >= 16


def main():
    events = arrival_order(build_events())
    check(events)
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, OUT_NAME)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for ev in events:
            f.write(json.dumps(ev, ensure_ascii=False, separators=(", ", ": ")) + "\n")
    print("wrote %d events to %s" % (len(events), path))


if __name__ == "__main__":
    main()

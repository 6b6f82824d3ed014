#!/usr/bin/env python3
"""Markdown summary of an Autobahn fuzzingclient report (index.json), per case group.

Usage: summarize.py INDEX_JSON WSTEST_VERSION ELAPSED_SECONDS > summary.md
Exits 1 when any case FAILED (after printing the summary).
"""
import json
import os
import sys
from collections import Counter, defaultdict

BEHAVIORS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
GROUPS = {
    "1": "Framing",
    "2": "Pings/Pongs",
    "3": "Reserved bits",
    "4": "Opcodes",
    "5": "Fragmentation",
    "6": "UTF-8 handling",
    "7": "Close handling",
    "9": "Limits/performance",
    "10": "Auto-fragmentation",
    "12": "permessage-deflate",
    "13": "permessage-deflate",
}


def case_key(case_id):
    return [int(p) for p in case_id.split(".")]


def describe(outdir, r):
    """The case's description, Autobahn's verdict, and what midge actually sent."""
    report = os.path.join(outdir, r.get("reportfile", ""))
    if not os.path.isfile(report):
        return ""
    with open(report) as f:
        d = json.load(f)
    got = []
    for event in d.get("received", []):
        if event and event[0] == "message":
            long = event[1].endswith(" ...")
            got.append("message (long: cut short in the report)" if long else "message (%d B)" % len(event[1]))
        elif event:
            got.append(str(event[0]))
    got.append("close %s" % r.get("remoteCloseCode"))
    what = d.get("description", "").split("\n")[0].strip().rstrip(".")
    return "%s. Autobahn: %s Received: %s." % (what, d.get("result", ""), ", ".join(got))


def main():
    index_path, version, elapsed = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(index_path) as f:
        index = json.load(f)
    outdir = os.path.dirname(index_path)
    lines = []
    failed_total = 0
    for agent, cases in sorted(index.items()):
        groups = defaultdict(Counter)
        notes = defaultdict(list)
        durations = Counter()
        for case_id, r in cases.items():
            group = case_id.split(".")[0]
            groups[group][r["behavior"]] += 1
            durations[group] += r.get("duration", 0)
            if r["behavior"] != "OK":
                notes[r["behavior"]].append((case_id, r))
        lines.append("# Autobahn|Testsuite: midge WebSocket layer (%s)" % agent)
        lines.append("")
        lines.append(
            "`make autobahn`: `wstest -m fuzzingclient` (autobahntestsuite %s) against "
            "`tests/autobahn/ws_echo.rs`, which runs `midge::ws` (the broker's handshake and "
            "frame code; text via `FrameDecoder::for_messages`). %d cases in %s s." % (version, len(cases), elapsed)
        )
        lines.append("")
        lines.append("| group | cases | " + " | ".join(BEHAVIORS) + " | case time (ms) |")
        lines.append("|---|---:|" + "---:|" * len(BEHAVIORS) + "---:|")
        total = Counter()
        for group in sorted(groups, key=int):
            c = groups[group]
            total.update(c)
            name = "%s %s" % (group, GROUPS.get(group, ""))
            row = [name.strip(), str(sum(c.values()))] + [str(c[b]) for b in BEHAVIORS]
            lines.append("| " + " | ".join(row) + " | %d |" % durations[group])
        row = ["**all**", str(sum(total.values()))] + [str(total[b]) for b in BEHAVIORS]
        lines.append("| " + " | ".join(row) + " | %d |" % sum(durations.values()))
        lines.append("")
        failed_total += total["FAILED"]
        for behavior in ["FAILED", "UNIMPLEMENTED", "NON-STRICT", "INFORMATIONAL"]:
            if not notes[behavior]:
                continue
            lines.append("%s cases:" % behavior)
            lines.append("")
            for case_id, r in sorted(notes[behavior], key=lambda n: case_key(n[0])):
                lines.append("- %s %s: %s" % (behavior, case_id, describe(outdir, r)))
            lines.append("")
        if notes["INFORMATIONAL"]:
            lines.append(
                "INFORMATIONAL is Autobahn's verdict for behaviour the RFC leaves to the implementation; "
                "it never counts as a failure."
            )
            lines.append("")
        if not notes["FAILED"]:
            lines.append("No FAILED cases.")
            lines.append("")
    sys.stdout.write("\n".join(lines))
    return 1 if failed_total else 0


if __name__ == "__main__":
    sys.exit(main())

"""The demo model's questions in `make demo` and their scoring against the camera's event log.

    python -m flash_vstream_ros.cli.demo_check questions EVENTS OUT.json   # prints WINDOW\\tQ
    python -m flash_vstream_ros.cli.demo_check score WORK                 # per-item results

``questions`` reads the synthetic camera's event log (sim/events.py) for the world's objects and
writes the questions to ask (sim/demo_talk.py): which objects it saw (whole run, last 3 s),
yes/no about two of the world's objects and one name the world does not hold, the colour of one
object's shape. ``score`` reads WORK/questions.json, WORK/answer.qN.txt and the event log as it
stood at each question (WORK/events.qN.jsonl) and says, per item, what was true, what the answer
said and whether that is right.
"""

from __future__ import annotations

import json
from pathlib import Path
import sys
from typing import Any

from flash_vstream_ros.sim import demo_talk, qa

NOW_S = 3.0


def questions(names: list[str]) -> list[dict[str, Any]]:
    """[{kind, name, question, window}] for a world holding ``names``."""
    absent = qa.absent_names(names, 1)
    out: list[dict[str, Any]] = [
        {'kind': 'seen', 'name': '', 'question': demo_talk.SEEN_Q, 'window': 0.0},
        {'kind': 'now', 'name': '', 'question': demo_talk.NOW_Q, 'window': NOW_S},
    ]
    for name in [*names[:2], *absent]:
        q = demo_talk.PRESENT_Q.format(name=name)
        out.append({'kind': 'present', 'name': name, 'question': q, 'window': 0.0})
    shape = names[2].split()[1]
    q = demo_talk.COLOUR_Q.format(shape=shape)
    out.append({'kind': 'colour', 'name': names[2], 'question': q, 'window': 0.0})
    return out


def visible(records: list[dict[str, Any]], window: float) -> set[str]:
    """Objects the camera showed in the last ``window`` s of the log (0: the whole log)."""
    last = max(r['stamp'] for r in records if r['event'] == 'frame')
    since = last - window if window else float('-inf')
    return {r['object'] for r in records if r['event'] == 'visible' and r['stamp'] >= since}


def score(work: Path) -> tuple[int, int, list[str]]:
    """(right, total, report lines) of the demo's answers."""
    asked = json.loads((work / 'questions.json').read_text())
    right = total = 0
    lines = []
    for i, item in enumerate(asked):
        log = (work / f'events.q{i}.jsonl').read_text().splitlines()
        records = [json.loads(line) for line in log]
        names = [o['name'] for o in records[0]['objects']]
        truth = visible(records, item['window'])
        answer = (work / f'answer.q{i}.txt').read_text()
        for name, true, said in judged(item, names, truth, answer):
            ok = true == said
            right, total = right + ok, total + 1
            lines.append(
                f'Q{i + 1} {item["kind"]:<8} {name:<16} true={true!s:<5} '
                f'said={said!s:<5} {"right" if ok else "WRONG"}'
            )
    return right, total, lines


def judged(
    item: dict[str, Any], names: list[str], truth: set[str], answer: str
) -> list[tuple[str, bool, bool]]:
    """(object, truth, what the answer said) items of one question."""
    kind, name = item['kind'], item['name']
    if kind in ('seen', 'now'):
        return [(n, n in truth, qa.named(answer, n)) for n in names]
    if kind == 'present':
        return [(name, name in truth, qa.said_yes(answer))]
    return [(name, True, qa.colour_right(answer, name))]  # colour: its colour named first


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == 'questions':
        first = json.loads(Path(argv[1]).read_text().splitlines()[0])
        asked = questions([o['name'] for o in first['objects']])
        Path(argv[2]).write_text(json.dumps(asked, indent=1))
        for item in asked:
            print(f'{item["window"]:g}\t{item["question"]}')
        return 0
    if len(argv) == 2 and argv[0] == 'score':
        right, total, lines = score(Path(argv[1]))
        print('\n'.join(f'  {line}' for line in lines))
        print(f'  {right}/{total} right')
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))

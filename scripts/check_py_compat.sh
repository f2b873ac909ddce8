#!/usr/bin/env bash
# Python 3.10 (Humble, JetPack 6) and 3.12 (Jazzy) compatibility without those interpreters:
#  1. vermin: no syntax, stdlib module or function newer than 3.10 (code in a branch gated on
#     sys.version_info carries a `# novermin` comment);
#  2. ruff's parser with target-version py310: syntax newer than 3.10 (PEP 695 generics,
#     except*, ...) is an error (the project's lint rules run in CI's ruff step, not here);
#  3. no import of a stdlib module removed in 3.12 or 3.13 (distutils, imp, asyncore, ...).
# Usage: scripts/check_py_compat.sh [paths...]   (default: the package, launch, scripts, test)
set -euo pipefail
cd "$(dirname "$0")/.."
paths=("$@")
if [ ${#paths[@]} -eq 0 ]; then
  paths=(flash_vstream_ros)
  for p in launch scripts test benchmarks; do [ -d "$p" ] && paths+=("$p"); done
fi

# vermin has no `python -m vermin` entry: the executable on PATH, else in .venv/bin.
VERMIN=${VERMIN:-$(command -v vermin || echo .venv/bin/vermin)}
RUFF=${RUFF:-$(command -v ruff || echo .venv/bin/ruff)}
PYTHON=${PYTHON:-$(command -v python3)}

echo "== vermin --target=3.10- ${paths[*]}"
"$VERMIN" --target=3.10- --violations --no-tips --eval-annotations "${paths[@]}"

echo "== ruff check --select E9 --target-version py310"
"$RUFF" check --no-cache --select E9 --target-version py310 "${paths[@]}"

echo "== stdlib modules removed in Python 3.12/3.13"
"$PYTHON" - "${paths[@]}" <<'PY'
import ast
import pathlib
import sys

REMOVED = {
    'distutils', 'imp', 'asynchat', 'asyncore', 'smtpd',  # 3.12
    'aifc', 'audioop', 'cgi', 'cgitb', 'chunk', 'crypt', 'imghdr', 'mailcap', 'msilib', 'nis',
    'nntplib', 'ossaudiodev', 'pipes', 'sndhdr', 'spwd', 'sunau', 'telnetlib', 'uu',
    'xdrlib', 'lib2to3',  # 3.13
}
bad = []
for root in sys.argv[1:]:
    path = pathlib.Path(root)
    for file in sorted(path.rglob('*.py')) if path.is_dir() else [path]:
        for node in ast.walk(ast.parse(file.read_text(), filename=str(file))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            bad += [f'{file}:{node.lineno}: {n}' for n in names if n.split('.')[0] in REMOVED]
for line in bad:
    print(f'removed in Python 3.12/3.13: {line}')
sys.exit(1 if bad else 0)
PY
echo "python compatibility: OK (3.10 minimum, nothing removed by 3.13)"

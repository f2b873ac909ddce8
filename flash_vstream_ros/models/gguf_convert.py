"""llama.cpp's own conversion and quantisation, found or fetched from the registry.

``convert_hf_to_gguf.py`` with its ``conversion/`` and ``gguf-py/`` folders is only in the
llama-cpp-python source package (its ``vendor/llama.cpp``; the PyPI ``gguf`` package does not
match the script). :func:`find_llama_cpp` looks in ``--llama-cpp``, ``$FLASH_VSTREAM_LLAMA_CPP``
and ``~/.cache/flash_vstream_ros/llama.cpp-<version>``, and fills the cache once with
``pip download`` when asked to. :func:`quantize` is ``llama_cpp.llama_model_quantize``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
import shutil
import subprocess
import sys
import tempfile

from flash_vstream_ros.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

LLAMA_CPP_PYTHON = '0.3.36'  # the source package whose vendor/llama.cpp converts


def default_llama_cpp_dir() -> Path:
    return Path(os.path.expanduser('~/.cache/flash_vstream_ros')) / f'llama.cpp-{LLAMA_CPP_PYTHON}'


def find_llama_cpp(given: str | Path | None = None, fetch: bool = True) -> Path:
    """The folder holding convert_hf_to_gguf.py, conversion/ and gguf-py/ (see the module doc)."""
    candidates = [Path(p) for p in (given, os.environ.get('FLASH_VSTREAM_LLAMA_CPP')) if p]
    candidates.append(default_llama_cpp_dir())
    for folder in candidates:
        if (folder / 'convert_hf_to_gguf.py').is_file() and (folder / 'gguf-py').is_dir():
            return folder
        if given and folder == Path(given):
            raise ConfigError(f'--llama-cpp {str(folder)!r} has no convert_hf_to_gguf.py')
    if not fetch:
        raise ConfigError('llama.cpp conversion scripts not found: ' + _FETCH_HINT)
    return fetch_llama_cpp(default_llama_cpp_dir())


_FETCH_HINT = (
    f'pip download --no-deps --no-binary :all: llama-cpp-python=={LLAMA_CPP_PYTHON}, unpack it '
    'and pass its vendor/llama.cpp as --llama-cpp (or set FLASH_VSTREAM_LLAMA_CPP)'
)


def fetch_llama_cpp(dest: Path, sdist: Path | None = None) -> Path:
    """Unpack the conversion part of llama-cpp-python's source package into ``dest``.

    ``sdist``: a downloaded ``llama_cpp_python-*.tar.gz``; None: ``pip download`` it (76 MB).
    """
    import tarfile

    with tempfile.TemporaryDirectory() as tmp:
        if sdist is None:
            log.warning(
                'fetching llama-cpp-python %s sources (convert_hf_to_gguf.py)', LLAMA_CPP_PYTHON
            )
            cmd = [sys.executable, '-m', 'pip', 'download', '--no-deps', '--no-binary', ':all:']
            cmd += ['-d', tmp, f'llama-cpp-python=={LLAMA_CPP_PYTHON}']
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            found = sorted(Path(tmp).glob('llama_cpp_python-*.tar.gz'))
            if done.returncode != 0 or not found:
                raise ConfigError(
                    f'cannot fetch the llama.cpp sources ({done.stderr[-300:]}): {_FETCH_HINT}'
                )
            sdist = found[0]
        wanted = ('convert_hf_to_gguf.py', 'conversion/', 'gguf-py/', 'LICENSE')
        staging = Path(tmp) / 'unpacked'
        with tarfile.open(sdist) as tar:
            members = []
            for m in tar.getmembers():
                parts = m.name.split('/vendor/llama.cpp/', 1)
                if len(parts) == 2 and parts[1].startswith(wanted) and (m.isfile() or m.isdir()):
                    m.name = parts[1]
                    members.append(m)
            if not members:
                raise ConfigError(f'{sdist} has no vendor/llama.cpp/convert_hf_to_gguf.py')
            if hasattr(tarfile, 'data_filter'):  # Python 3.10.12+: refuse odd members too
                tar.extractall(staging, members=members, filter='data')
            else:  # names were checked above (only the wanted files and folders)
                tar.extractall(staging, members=members)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(dest)
        shutil.move(str(staging), dest)
    return dest


# The conversion runs in its own interpreter: it puts its gguf-py first on sys.path (the PyPI
# gguf of this environment does not match it). An unknown BPE pre-tokenizer is named here.
_RUNNER = r"""
import importlib.util, logging, sys
vendor, forced = sys.argv[1], sys.argv[2]
sys.path.insert(0, vendor)
script = vendor + '/convert_hf_to_gguf.py'
spec = importlib.util.spec_from_file_location('convert_hf_to_gguf', script)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
from conversion.base import TextModel
original = TextModel.get_vocab_base_pre
def get_vocab_base_pre(self, tokenizer):
    try:
        return original(self, tokenizer)
    except NotImplementedError:
        logging.warning('unknown BPE pre-tokenizer: written as %r', forced)
        return forced
TextModel.get_vocab_base_pre = get_vocab_base_pre
sys.argv = ['convert_hf_to_gguf.py'] + sys.argv[3:]
module.main()
"""


def run_convert(vendor: Path, folder: Path, out: Path, outtype: str, pre_tokenizer: str) -> None:
    """convert_hf_to_gguf.py on a plain HF causal-LM folder -> ``out``."""
    cmd = [sys.executable, '-c', _RUNNER, str(vendor), pre_tokenizer, str(folder)]
    cmd += ['--outfile', str(out), '--outtype', outtype]
    env = {k: v for k, v in os.environ.items() if k != 'NO_LOCAL_GGUF'}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0 or not out.is_file():
        tail = (done.stderr or done.stdout)[-2000:]
        raise ModelError(
            f'convert_hf_to_gguf.py failed on {folder} (exit {done.returncode}):\n{tail}'
        )
    log.info('converted %s -> %s (%s)', folder, out, outtype)


def quantize(src: Path, out: Path, quant: str, threads: int = 0) -> None:
    """llama.cpp's own quantisation (``llama_model_quantize``) of an f16/f32 GGUF."""
    from flash_vstream_ros.models.gguf import llama_cpp_module

    lib = llama_cpp_module()
    ftypes = {'q8_0': lib.LLAMA_FTYPE_MOSTLY_Q8_0, 'q4_k_m': lib.LLAMA_FTYPE_MOSTLY_Q4_K_M}
    params = lib.llama_model_quantize_default_params()
    params.ftype = ftypes[quant]
    params.nthread = threads
    rc = lib.llama_model_quantize(str(src).encode(), str(out).encode(), params)
    if rc != 0 or not out.is_file():
        raise ModelError(f'llama_model_quantize {src} -> {quant} failed ({rc})')

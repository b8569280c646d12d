"""A position per row, in-place state and streams that join and leave (issue 23), on tiny models of every
family exported in the test: a stream's tokens are the same whether it runs alone or joins a running batch
midway, given the same uniforms; prompts of different lengths share one batch; misuse is one line."""
from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
import torch

from arexport import DataInfo, export_model
from arrun.commands import sample as sample_command
from arrun.contract.errors import UsageError
from arrun.generate import SampleOptions, make_plan
from arrun.runtime import PlainStepper, RowError, Stepper, prefill, prefill_rows
from arrun.sampling import sample_categorical
from arrun.session import open_model
from arrun.streams import StreamError, Streams
from conftest import ALPHABET, VOCODER, exported, exported_vocoder
from tiny_family import Decay, DecayConfig

FRAMES = 6  # a vocoder stream's frames: 6 * hop elements


@pytest.fixture(scope="module")
def decay_step(tmp_path_factory):
    torch.manual_seed(0)
    model = Decay(DecayConfig(vocab_size=len(ALPHABET), dim=8))
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.5)
    data = DataInfo("my-text.txt", "text", len(ALPHABET), alphabet=ALPHABET)
    return export_model(model.eval(), data, tmp_path_factory.mktemp("decay") / "step.onnx", verify=False).path


# family -> (step graph, classes): every family, a conditional one among them, and a vocoder with features
FAMILIES = {
    "transformer": lambda: (exported("transformer", "step"), 0),
    "wavenet": lambda: (exported("wavenet", "step", 3), 3),
    "vocoder": lambda: (exported_vocoder("step"), 0),
    "pixelcnn": lambda: (exported("pixelcnn", "step", 3), 3),
    "pixelrnn": lambda: (exported("pixelrnn", "step"), 0),
}


def model_of(family, request):
    if family == "decay":
        return open_model(request.getfixturevalue("decay_step")), 0
    path, classes = FAMILIES[family]()
    return open_model(path), classes


def stream_specs(info, classes, n=4):
    """n streams: (join kwargs, elements to sample), each with its own prompt, class and features."""
    rng = np.random.default_rng(1)
    limit = info.max_length or 16
    specs = []
    for i in range(n):
        kwargs = {"prompt": rng.integers(0, info.vocab_size, i % 3)}  # prompts of 0, 1, 2 elements
        if classes:
            kwargs["condition"] = i % classes
        if info.features:
            kwargs["features"] = rng.normal(size=(FRAMES, VOCODER["mel_bins"])).astype(np.float32)
            limit = FRAMES * VOCODER["mel_hop"]
        specs.append((kwargs, limit - len(kwargs["prompt"]) - i % 2))  # some streams end before their limit
    return specs


def run_streams(model, slots, specs, joins, seeds):
    """Stream i joins at global step joins[i] (or as soon as a slot is free after it), samples specs[i][1]
    elements with uniforms of its own generator (seeded by seeds[i]) and leaves -> (tokens, outputs) of each."""
    streams = Streams(model, slots)
    slot_of, tokens, outputs = {}, {i: [] for i in range(len(specs))}, {i: [] for i in range(len(specs))}
    rngs = [np.random.default_rng(seed) for seed in seeds]
    feed = np.zeros(slots, np.int64)
    waiting, step = list(range(len(specs))), 0
    while waiting or slot_of:
        for i in [i for i in waiting if joins[i] <= step and streams.free]:
            slot_of[i] = streams.join(**specs[i][0])
            waiting.remove(i)
        out = streams.step(feed)
        for i, slot in list(slot_of.items()):
            if streams.sampling[slot]:
                outputs[i].append(out[slot].copy())
                feed[slot] = token = int(sample_categorical(out[slot:slot + 1], rngs[i].random(1))[0])
                tokens[i].append(token)
                if len(tokens[i]) == specs[i][1]:
                    streams.leave(slot)
                    del slot_of[i]
        step += 1
    return tokens, outputs


@pytest.mark.parametrize("family", [*FAMILIES, "decay"])
def test_a_stream_samples_the_same_alone_or_joining_a_running_batch(family, request):
    model, classes = model_of(family, request)
    specs = stream_specs(model.info, classes)
    alone = [run_streams(model, 1, [spec], [0], [i]) for i, spec in enumerate(specs)]
    # 3 slots, 4 streams joining at steps 0, 2, 5, 3: the fourth waits for a slot and takes the first free one
    tokens, outputs = run_streams(model, 3, specs, [0, 2, 5, 3], range(len(specs)))
    for i, (want_tokens, want_outputs) in enumerate(alone):
        assert tokens[i] == want_tokens[0], (family, i)
        assert np.abs(np.array(outputs[i]) - np.array(want_outputs[0])).max() < 1e-5


def test_joining_a_full_batch_or_leaving_twice_is_one_line(request):
    model, _ = model_of("transformer", request)
    streams = Streams(model, 2)
    a = streams.join(prompt=[1, 2])
    streams.join()
    with pytest.raises(StreamError, match="all 2 slots are taken") as e:
        streams.join()
    assert isinstance(e.value, ValueError) and isinstance(e.value, UsageError) and "\n" not in str(e.value)
    streams.leave(a)
    with pytest.raises(StreamError, match=f"slot {a} has no stream"):
        streams.leave(a)
    with pytest.raises(StreamError, match="slot 7 has no stream"):
        streams.leave(7)
    assert streams.join() == a  # the free slot again


def test_leaving_a_slot_never_joined_is_one_line(request):
    model, _ = model_of("transformer", request)
    streams = Streams(model, 3)
    streams.join()
    for slot in (1, 2, -1):  # in the batch but never joined, and before its first slot
        with pytest.raises(StreamError, match=rf"slot {slot} has no stream \(it left already, or never joined\); "
                                              "leave each stream once") as e:
            streams.leave(slot)
        assert "\n" not in str(e.value)
    assert streams.running.tolist() == [True, False, False] and streams.free == [1, 2]  # nothing changed


def test_stepping_with_tokens_that_are_not_one_level_per_slot_is_one_line(request):
    model, _ = model_of("transformer", request)  # 11 levels
    streams = Streams(model, 3)
    streams.join()
    streams.join(prompt=[1, 2])
    refusals = [(np.zeros(2, np.int64), r"one token per slot, an int64 array of shape \(3,\).*got \(2,\); pass "
                                         r"np.zeros\(3, np.int64\)"),
                (np.zeros((3, 1), np.int64), r"got \(3, 1\)")]
    for tokens, message in refusals:  # the first step reads no token, but a wrong shape is still a caller's bug
        with pytest.raises(StreamError, match=message) as e:
            streams.step(tokens)
        assert "\n" not in str(e.value)
    assert streams.position.tolist() == [0, 0, 0]  # a refused step changes nothing
    streams.step(np.zeros(3, np.int64))  # slot 0 now samples, slot 1 is inside its prompt, slot 2 is free
    for tokens, message in [(None, r"shape \(3,\).*got none"), (np.full(3, 0.5), "integer tokens.*got float64"),
                            (np.array([11, 0, 0]), r"the token for slot 0 is 11, outside the levels 0..10"),
                            (np.array([-1, 0, 0]), r"slot 0 is -1")]:
        with pytest.raises(StreamError, match=message):
            streams.step(tokens)
    assert streams.position.tolist() == [1, 1, 0]
    streams.step(np.array([3, 99, -1]))  # only the sampling slot's token is read and checked
    assert streams.position.tolist() == [2, 2, 0]


def test_a_stream_past_its_end_and_bad_joins_are_refused(request):
    model, _ = model_of("pixelcnn", request)  # 20 positions, conditional
    streams = Streams(model, 2)
    with pytest.raises(StreamError, match="conditioned on 3 classes"):
        streams.join()
    with pytest.raises(StreamError, match="the prompt has 20 elements and a stream may take 20"):
        streams.join(prompt=np.zeros(20), condition=1)
    slot = streams.join(condition=1)
    tokens = np.zeros(2, np.int64)
    for _ in range(20):
        streams.step(tokens)
    with pytest.raises(StreamError, match=f"slot {slot} has taken all 20 positions"):
        streams.step(tokens)
    vocoder = Streams(open_model(exported_vocoder("step")), 1)
    with pytest.raises(StreamError, match="give each stream its features"):
        vocoder.join()


@pytest.mark.parametrize("runner", [Stepper, PlainStepper])
def test_a_scalar_position_is_refused_in_one_line(runner, request):
    model, _ = model_of("wavenet", request)
    stepper = runner(model, 3)
    stepper.reset(np.zeros(3, np.int64))
    with pytest.raises(RowError, match=r"one position per row, an int64 array of shape \(3,\), got int 0; pass "
                                       r"np.full\(3, t\)") as e:
        stepper.step(np.zeros(3, np.int64), 0)
    assert isinstance(e.value, ValueError) and "\n" not in str(e.value)
    with pytest.raises(RowError, match=r"got an array of shape \(\)"):
        stepper.step(np.zeros(3, np.int64), np.array(0))


@pytest.mark.parametrize("family", ["transformer", "wavenet"])
def test_prefill_rows_starts_every_row_at_its_own_position(family, request):
    """Rows of different lengths prefilled together (right-aligned, chunks where the graph takes them) give
    each row's output at its last input as the row alone does."""
    model, classes = model_of(family, request)
    rng = np.random.default_rng(0)
    inputs = [rng.integers(0, model.info.vocab_size, n) for n in (1, 9, 4)]
    condition = np.array([0, 2, 1]) if classes else None
    stepper = Stepper(model, 3)
    stepper.reset(condition)
    got = prefill_rows(stepper, inputs)  # (3, V)
    alone = Stepper(model, 1)
    for b, x in enumerate(inputs):
        alone.reset(None if condition is None else condition[b:b + 1])
        want = prefill(alone, x[None], np.zeros(1, np.int64))[0, -1]
        assert np.abs(got[b] - want).max() < 1e-5


def test_in_place_state_is_one_buffer_and_rolls_out_as_two(request):
    """A state declared in_place is bound as one OrtValue for in and out; where the graph's write is one slot
    after its reads (the WaveNet ring), the rollout equals the separate buffers', rows at different positions."""
    model, _ = model_of("wavenet", request)
    aliased = replace(model, info=replace(model.info, state=tuple(replace(s, in_place=True) for s in model.info.state)))
    runners = [Stepper(model, 3), Stepper(aliased, 3)]
    assert runners[1]._sets[0][0] is runners[1]._sets[1][0] and runners[0]._sets[0][0] is not runners[0]._sets[1][0]
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (3, 60))
    condition = np.array([0, 1, 2])
    for r in runners:
        r.reset(condition)
    start = np.array([0, 7, 23])  # row b joins at step start[b]
    for t in range(60):
        joining = np.flatnonzero(start == t)
        position = np.maximum(t - start, 0)
        outs = []
        for r in runners:
            if len(joining):
                r.reset_rows(joining)
            outs.append(r.step(x[:, t], position).copy())
        assert np.array_equal(outs[0], outs[1]), t


def test_mixed_prompts_in_one_sample_call(tmp_path):
    """--prompt repeated: every row prefilled from its own start; sample i equals prompt i alone."""
    path = exported("transformer", "step")
    prompts = ("ab", "hhh a.b cd", "", "g")
    stream = io.StringIO()
    record = sample_command(path, options=SampleOptions(num_samples=5, prompt=prompts, length=12, seed=3), stream=stream)
    assert record["prompt_lengths"] == [2, 10, 0, 1] and record["num_samples"] == 5
    for i, text in enumerate(record["text"]):
        prompt = prompts[i % len(prompts)]
        alone = sample_command(path, options=SampleOptions(num_samples=i + 1, prompt=prompt, length=12, seed=3),
                               stream=io.StringIO())
        assert text == alone["text"][i] and text.startswith(prompt) and len(text) == len(prompt) + 12


def test_prompts_file_and_its_errors(tmp_path):
    path = exported("transformer", "step")
    file = tmp_path / "prompts.txt"
    file.write_text("ab\n\nhhh\n")
    record = sample_command(path, options=SampleOptions(length=5), stream=io.StringIO(), prompts=file)
    assert record["prompt_lengths"] == [2, 0, 3] and [t[:len(p)] for t, p in zip(record["text"], ["ab", "", "hhh"])] \
        == ["ab", "", "hhh"]
    with pytest.raises(UsageError, match="-n 2 is smaller than the 3 prompts"):
        sample_command(path, options=SampleOptions(num_samples=2, length=5), stream=io.StringIO(), prompts=file)
    with pytest.raises(UsageError, match="--prompt and --prompts both give prompts"):
        sample_command(path, options=SampleOptions(prompt="a"), stream=io.StringIO(), prompts=file)
    (tmp_path / "bad.txt").write_bytes(b"ab\xff\n")
    with pytest.raises(UsageError, match="is not UTF-8 text"):
        sample_command(path, options=SampleOptions(), stream=io.StringIO(), prompts=tmp_path / "bad.txt")
    info = replace(open_model(path).info, max_length=6)
    with pytest.raises(UsageError, match="prompt 2 of 2: the prompt has 7 characters and the model's context is 6"):
        make_plan(SampleOptions(prompt=("ab", "abcdefg")), info)

"""Decode steps that a GPU can replay as captured graphs: tokens chosen on the device as the old
host-side picker chose them, no host sync inside a captured region, shapes that do not change from
step to step, and no graph break under `torch.compile(fullgraph=True)`."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from model.code_predictor import FramePredictor
from model.device_sampling import DeviceSampler
from model.expert_quant import Nf4Experts
from model.op_count import counting
from model.sampling import CODE_PREDICTOR_DEFAULT, TALKER_DEFAULT, Sampling, TokenPicker
from model.step_graph import StepGraph

VOCAB = 300
SAMPLINGS = {
    "greedy": Sampling(do_sample=False, repetition_penalty=1.05),
    "talker": TALKER_DEFAULT,
    "code_predictor": CODE_PREDICTOR_DEFAULT,
    "everything": Sampling(do_sample=True, temperature=0.7, top_k=20, top_p=0.8, repetition_penalty=1.1),
}


@pytest.mark.parametrize("name", sorted(SAMPLINGS))
def test_device_choice_equals_the_host_picker_for_the_same_seed(name: str) -> None:
    sampling = SAMPLINGS[name]
    suppress = list(range(VOCAB - 20, VOCAB - 1))
    data = torch.Generator().manual_seed(1)
    for seed in range(40):
        logits = 3 * torch.randn(1, VOCAB, generator=data)
        previous = torch.randint(0, VOCAB, (1, 12), generator=data)
        old = TokenPicker(sampling, suppress, generator=torch.Generator().manual_seed(seed))
        new = DeviceSampler(sampling, VOCAB, suppress, generator=torch.Generator().manual_seed(seed))
        chosen = new.choose(logits, seen=new.seen_mask(previous))
        assert int(chosen) == old(logits, previous), (name, seed)


def test_pre_drawn_noise_samples_the_processed_distribution() -> None:
    """The code predictor draws a frame's noise in one call: a different stream of draws from the
    old picker's, so its choices are checked against the distribution they should follow."""
    sampling = Sampling(do_sample=True, temperature=0.8, top_k=6, top_p=0.9)
    sampler = DeviceSampler(sampling, 12, generator=torch.Generator().manual_seed(3))
    logits = torch.linspace(-1.0, 1.5, 12).view(1, -1)
    expected = torch.softmax(sampler.scores(logits), dim=-1)[0]
    draws = 4000
    noise = sampler.noise(draws)
    counts = torch.zeros(12)
    for row in range(draws):
        counts[int(sampler.choose(logits, noise[row]))] += 1
    assert (counts / draws - expected).abs().max() < 0.03
    assert counts[expected == 0].sum() == 0


def _frame_predictor(demo: Any) -> tuple[FramePredictor, int]:
    talker = demo.model.talker
    sampler = FramePredictor(talker, CODE_PREDICTOR_DEFAULT, torch.Generator().manual_seed(0))
    return sampler, int(talker.config.text_config.hidden_size)


def test_code_predictor_frame_has_no_sync_and_the_same_shapes_every_frame(demo: Any) -> None:
    predictor, hidden = _frame_predictor(demo)
    signatures = []
    with torch.inference_mode():
        for code0 in (5, 17):
            inputs = torch.randn(1, 1, hidden, dtype=demo.model.talker.dtype), torch.tensor([[code0]])
            noise = predictor.noise()
            with counting(signature=True) as count:
                codes, _ = predictor.run(*inputs, noise)
            assert count.syncs == 0
            assert codes.shape == (int(demo.model.talker.config.num_code_groups),)
            signatures.append(count.signature)
    assert signatures[0] == signatures[1]


def test_a_step_graph_is_one_captured_region_off_the_gpu(demo: Any) -> None:
    predictor, hidden = _frame_predictor(demo)
    step = StepGraph("code_predictor", predictor.run, torch.device("cpu"))
    inputs = torch.randn(1, 1, hidden, dtype=demo.model.talker.dtype), torch.tensor([[5]])
    with torch.inference_mode():
        noise = predictor.noise()
        expected = predictor.run(*inputs, noise)
        with counting() as count:
            got = step(*inputs, noise)
    assert count.region_calls == 1 and count.python_launches == 1
    assert count.captured_launches == count.launches and count.captured_syncs == 0
    assert all(torch.equal(a, b) for a, b in zip(expected, got, strict=True))


def test_thinker_decode_steps_have_no_sync_and_static_ones_equal_the_growing_cache(demo: Any) -> None:
    """Where graphs capture (CUDA) the Thinker decodes on preallocated keys and values and hands the
    reply's positions back to the conversation's cache at the end; here both forms run side by side."""
    from model.media_input import UserTurn
    from model.thinker_decode import ThinkerDecoder
    from tests.engine_helpers import greedy_engine, run

    engine = greedy_engine(demo, speak=False, max_text_tokens=2)
    run(engine, UserTurn(text="hello"))
    cache = engine.context.cache
    thinker = demo.model.thinker
    vocab = int(thinker.config.text_config.vocab_size)
    sampler = DeviceSampler(Sampling(do_sample=False, repetition_penalty=1.05), vocab)
    seen = sampler.seen_mask(engine.context.all_ids().view(1, -1))
    logits = torch.randn(1, 1, vocab, generator=torch.Generator().manual_seed(6))
    length = int(cache.get_seq_length())
    growing = copy.deepcopy(cache)
    dynamic = ThinkerDecoder(thinker, growing, engine.conversation.rope_delta, static=False)
    static = ThinkerDecoder(thinker, cache, engine.conversation.rope_delta, static=True)
    signatures, static_logits = [], logits
    with torch.inference_mode():
        for _ in range(4):
            with counting() as count:
                chosen = sampler.choose(logits[:, -1], seen=seen)
                seen.scatter_(1, chosen, True)
                logits = dynamic.step(chosen)
            assert count.syncs == 0
            with counting(signature=True) as count:
                static_logits = static.step(chosen)
            assert count.syncs == 0 and count.region_calls == 1
            signatures.append(count.signature)
            torch.testing.assert_close(static_logits, logits, rtol=1e-4, atol=1e-5)
        static.finish()
        assert signatures[1] == signatures[-1]
        assert cache.get_seq_length() == growing.get_seq_length() == length + 4
        for mine, theirs in zip(cache.layers, growing.layers, strict=True):
            torch.testing.assert_close(mine.keys, theirs.keys, rtol=1e-4, atol=1e-5)
        # The next reply reuses the buffers (and, on CUDA, the recorded graph) kept with the cache.
        again = ThinkerDecoder(thinker, cache, engine.conversation.rope_delta, static=True)
        assert again._step is static._step and again._step is not None and again._step.kv is not None
        buffer = again._step.kv.keys.data_ptr()
        torch.testing.assert_close(again.step(chosen), dynamic.step(chosen), rtol=1e-4, atol=1e-5)
        assert again._step.kv.keys.data_ptr() == buffer


def _nf4_experts(dtype: torch.dtype = torch.float32) -> Nf4Experts:
    class Sizes:
        num_experts, hidden_dim, intermediate_dim = 8, 128, 64
        act_fn = staticmethod(torch.nn.functional.silu)

    experts = Nf4Experts.like(Sizes(), dtype, "cpu")  # type: ignore[arg-type]
    weights = torch.Generator().manual_seed(5)
    for expert in range(8):
        for name, shape in experts.shapes.items():
            experts.store_(name, expert, 0.05 * torch.randn(*shape, generator=weights))
    return experts


def test_nf4_decode_moe_has_static_shapes_and_matches_the_per_expert_path() -> None:
    experts = _nf4_experts()
    x = torch.randn(1, 128, generator=torch.Generator().manual_seed(2))
    weights = torch.tensor([[0.6, 0.4]])
    signatures = []
    with torch.inference_mode():
        for picked in ([[1, 6]], [[3, 2]]):
            index = torch.tensor(picked)
            with counting(signature=True) as count:
                out = experts(x, index, weights)
            assert count.syncs == 0
            signatures.append(count.signature)
            torch.testing.assert_close(out, experts.forward_picked(x, index, weights), rtol=1e-5, atol=1e-6)
    assert signatures[0] == signatures[1]


def test_step_functions_compile_without_graph_breaks(demo: Any) -> None:
    predictor, hidden = _frame_predictor(demo)
    experts = _nf4_experts()
    sampler = DeviceSampler(TALKER_DEFAULT, VOCAB, [VOCAB - 2], generator=torch.Generator().manual_seed(0))
    inputs = torch.randn(1, 1, hidden, dtype=demo.model.talker.dtype), torch.tensor([[5]])
    x, index, weights = torch.randn(1, 128), torch.tensor([[1, 6]]), torch.tensor([[0.6, 0.4]])
    logits, seen = torch.randn(1, VOCAB), sampler.seen_mask(torch.tensor([[3, 4]]))
    with torch.inference_mode():
        noise = predictor.noise()
        codes, embed = torch.compile(predictor.run, fullgraph=True, backend="eager")(*inputs, noise)
        expected_codes, expected_embed = predictor.run(*inputs, noise)
        moe = torch.compile(experts.forward_slots, fullgraph=True, backend="eager")(x, index, weights)
        token_noise = sampler.noise(1)
        token = torch.compile(sampler.choose, fullgraph=True, backend="eager")(logits, token_noise, seen)
        assert torch.equal(token, sampler.choose(logits, token_noise, seen))
    assert torch.equal(codes, expected_codes) and torch.equal(embed, expected_embed)
    torch.testing.assert_close(moe, experts.forward_slots(x, index, weights))


def test_thinker_and_talker_decode_steps_compile_without_graph_breaks(demo_dir: Any) -> None:
    """On the NF4 model (4-bit linears, the slot MoE): the static Thinker step and both steps on the
    growing cache (the CPU path)."""
    from model.loading import load_model
    from model.media_input import UserTurn
    from model.talker_stream import TalkerStream
    from model.thinker_decode import ThinkerDecoder
    from tests.engine_helpers import greedy_engine, run

    loaded = load_model(str(demo_dir), quantization="nf4")
    engine = greedy_engine(loaded, speak=False, max_text_tokens=2)
    run(engine, UserTurn(text="hello"))
    talker = loaded.model.talker
    stream = TalkerStream(talker, engine.plan.talker, engine.plan.code_predictor)
    hidden = int(talker.config.text_config.hidden_size)
    with torch.inference_mode():
        stream.prefill(torch.randn(1, 5, hidden), torch.arange(5).view(1, 1, 5).expand(4, 1, 5))
        decoder = ThinkerDecoder(
            loaded.model.thinker, engine.context.cache, engine.conversation.rope_delta, static=True
        )
        decoder.step(torch.tensor([[5]]))  # builds the static buffers
        static_step = decoder._step
        assert static_step is not None and static_step.kv is not None
        position = decoder.length
        step = torch.compile(static_step._run, fullgraph=True, backend="eager")
        mask = static_step.kv.mask(position)
        (logits,) = step(torch.tensor([[5]]), torch.full((4, 1, 1), position), torch.tensor([position]), mask)
        assert logits.shape[-1] == int(loaded.model.thinker.config.text_config.vocab_size)
        dynamic = ThinkerDecoder(
            loaded.model.thinker, engine.context.cache, engine.conversation.rope_delta, static=False
        )
        torch.compile(dynamic.step, fullgraph=True, backend="eager")(torch.tensor([[5]]))
        seen = stream._sampler.seen_mask(torch.tensor([[3]]))
        decode = torch.compile(stream.decode, fullgraph=True, backend="eager")
        last_hidden, code0 = decode(torch.randn(1, 1, hidden), torch.full((4, 1, 1), 5), None, seen)
    assert last_hidden.shape == (1, 1, hidden) and code0.shape == (1, 1)


def test_static_talker_steps_equal_the_growing_cache_with_fixed_shapes(demo: Any) -> None:
    """Where graphs capture (CUDA) the Talker steps on preallocated keys and values; here both
    forms run on the same inputs and make the same codes."""
    from model.talker_stream import TalkerStream

    talker = demo.model.talker
    hidden = int(talker.config.text_config.hidden_size)
    data = torch.Generator().manual_seed(4)
    prompt = torch.randn(1, 7, hidden, generator=data)
    texts = [torch.randn(1, 1, hidden, generator=data) for _ in range(6)]
    positions = torch.arange(7).view(1, 1, 7).expand(4, 1, 7)
    codes: dict[bool, list[torch.Tensor]] = {}
    signatures: list[Any] = []
    with torch.inference_mode():
        for static in (False, True):
            stream = TalkerStream(
                talker, TALKER_DEFAULT.greedy(), CODE_PREDICTOR_DEFAULT.greedy(), static_decode=static
            )
            stream.prefill(prompt, positions)
            codes[static] = []
            for text in texts:
                with counting(signature=True) as count:
                    frame, _ = stream.step(text)
                codes[static].append(frame)
                assert count.captured_syncs == 0
                if static:
                    signatures.append(count.signature)
        static_step = stream._static_step
        assert static_step is not None and static_step.kv is not None
        compiled = torch.compile(static_step._run, fullgraph=True, backend="eager")
        position = stream._length
        step_inputs = (texts[0], torch.full((4, 1, 1), position), stream._sampler.noise(1), stream._seen)
        compiled(*step_inputs, torch.tensor([position]), static_step.kv.mask(position))
    assert all(torch.equal(a, b) for a, b in zip(codes[False], codes[True], strict=True))
    assert signatures[1] == signatures[-1]

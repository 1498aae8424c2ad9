"""The character-level examples (char_rnn, char_gpt): their text, their helpers, and short seeded runs that learn."""
import hashlib

import numpy as np
import pytest

import fusegrad as fg
from fusegrad.examples import char_gpt, char_rnn, text
from fusegrad.examples.text import CharVocab

# the shipped text's published checksum (data/text/README.md)
TEXT_SHA256 = "99e53cbb0aeb274344a254733db996ca2d05d5fcd10fc0ca02d6966f2b2bc961"


def falls(losses: list[float], k: int = 5) -> float:
    """Mean of the first k losses minus the mean of the last k."""
    return float(np.mean(losses[:k]) - np.mean(losses[-k:]))


def test_the_shipped_text_is_the_documented_file() -> None:
    path = text.default_text_path()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == TEXT_SHA256
    content = text.load_text()
    assert content.startswith("\n\n\n\n                ALICE'S ADVENTURES IN WONDERLAND")
    assert len(content) == 148480 and len(CharVocab.of(content)) == 72
    assert "\r" not in content


def test_a_missing_text_file_is_a_clear_error(tmp_path, capsys) -> None:
    missing = tmp_path / "no_such_book.txt"
    with pytest.raises(FileNotFoundError, match="text file not found: .*no_such_book.txt"):
        char_rnn.train(steps=1, text_path=str(missing))
    with pytest.raises(FileNotFoundError, match="no_such_book.txt"):
        char_gpt.train(steps=1, text_path=str(missing))
    for main in (char_rnn.main, char_gpt.main):  # the command line says it as a usage error, not a traceback
        with pytest.raises(SystemExit) as exit_info:
            main(["--text", str(missing)])
        assert exit_info.value.code == 2
        assert f"text file not found: {missing}" in capsys.readouterr().err


def test_text_that_is_too_short_or_misses_the_prompt(tmp_path, capsys) -> None:
    short = tmp_path / "short.txt"
    short.write_text("just a few words\n")
    with pytest.raises(ValueError, match="too short"):
        char_rnn.train(steps=1, seq_len=16, text_path=str(short), prompt="a")
    with pytest.raises(SystemExit):
        char_gpt.main(["--text", str(short), "--prompt", "Alice"])  # 'A' and 'l' never occur in it
    assert "not in the text's vocabulary" in capsys.readouterr().err


def test_vocab_encodes_and_decodes() -> None:
    vocab = CharVocab.of("hello world\n")
    assert vocab.chars == "\n dehlorw"
    ids = vocab.encode("hello")
    assert ids.dtype == np.int64 and ids.tolist() == [4, 3, 5, 5, 6]
    assert vocab.decode(ids) == "hello"
    with pytest.raises(ValueError, match="'z'"):
        vocab.encode("zero")


def test_windows_are_inputs_and_next_characters() -> None:
    ids = np.arange(100, dtype=np.int64)
    x, y = text.random_windows(ids, 4, 7, np.random.default_rng(0))
    assert x.shape == y.shape == (4, 7) and x.dtype == y.dtype == fg.int64
    xs, ys = x.numpy(), y.numpy()
    np.testing.assert_array_equal(ys[:, :-1], xs[:, 1:])  # consecutive windows of the text, shifted by one
    np.testing.assert_array_equal(ys[:, -1], xs[:, -1] + 1)
    batches = text.fixed_windows(ids, 4, 7, batches=3)
    assert len(batches) == 3 and all(bx.shape == (4, 7) for bx, _ in batches)
    assert batches[-1][1].numpy()[-1, -1] == 99  # the last window ends at the text's last character
    train, val = text.split_ids(ids, 0.1, 7)
    assert len(train) == 90 and len(val) == 10


def test_sample_index_follows_the_temperature() -> None:
    logits = np.log(np.array([0.1, 0.2, 0.7]))
    rng = np.random.default_rng(0)
    assert text.sample_index(logits, 0.0, rng) == 2
    draws = np.bincount([text.sample_index(logits, 1.0, rng) for _ in range(4000)], minlength=3) / 4000
    np.testing.assert_allclose(draws, [0.1, 0.2, 0.7], atol=0.03)
    cold = np.bincount([text.sample_index(logits, 0.25, rng) for _ in range(2000)], minlength=3) / 2000
    assert cold[2] > 0.98  # p^4 normalised: 0.7^4 / (0.1^4 + 0.2^4 + 0.7^4) = 0.9933


def test_lstm_sampler_carries_the_state_like_the_whole_sequence() -> None:
    fg.manual_seed(0)
    vocab = CharVocab.of("abcdefgh")
    model = char_rnn.CharLSTM(len(vocab), embed=8, hidden=16)
    seq = np.array([[0, 3, 1, 7, 2, 2, 5]])
    want = model(fg.tensor(seq))[0].numpy()[0]
    sampler = char_rnn.Sampler(model, vocab, jit=True)  # 7 calls: eager, capture, check, then replays
    h = c = fg.zeros(1, 1, 16)
    for t, char in enumerate(seq[0]):
        logits, h, c = sampler.advance(fg.tensor([[char]]), h, c)
        np.testing.assert_allclose(logits.numpy(), want[t], rtol=1e-4, atol=1e-5)
        h, c = fg.tensor(h.numpy()), fg.tensor(c.numpy())
    out = sampler("bad", 11, temperature=1.0)
    assert len(out) == 11 and set(out) <= set(vocab.chars)


def test_gpt_sampler_reads_a_zero_padded_block_like_the_bare_context() -> None:
    fg.manual_seed(0)
    vocab = CharVocab.of("abcdefgh")
    model = char_gpt.GPT(char_gpt.GPTConfig(len(vocab), block_size=8, n_layer=1, n_head=2, n_embd=16))
    context = np.array([[4, 1, 6]])
    want = model(fg.tensor(context)).numpy()[0, -1]
    padded = np.zeros((1, 8), dtype=np.int64)
    padded[0, :3] = context
    np.testing.assert_allclose(model(fg.tensor(padded)).numpy()[0, 2], want, rtol=1e-4, atol=1e-5)
    out = char_gpt.Sampler(model, vocab, jit=True)("abc", 12, temperature=1.0)  # longer than a block: slides
    assert len(out) == 12 and set(out) <= set(vocab.chars)
    with pytest.raises(ValueError, match="longer than block_size"):
        model(fg.zeros(1, 9, dtype=fg.int64))


def test_char_rnn_learns_and_samples() -> None:
    result, vocab = char_rnn.train(steps=40, batch_size=16, seq_len=8, embed=16, hidden=32, lr=1e-2, seed=0,
                                   sample_length=30, samples=1)
    assert len(result.losses) == 40
    assert result.losses[0] == pytest.approx(np.log(len(vocab)), abs=0.05)  # uniform at the start: ln 72
    assert falls(result.losses) > 0.8  # measured 4.13 -> 3.05
    assert result.val_loss < 3.5
    assert result.sample.startswith("Alice ") and len(result.sample) == len("Alice ") + 30
    assert set(result.sample) <= set(vocab.chars)


def test_char_gpt_learns_and_samples() -> None:
    result, vocab = char_gpt.train(steps=40, batch_size=16, block_size=16, n_layer=1, n_head=2, n_embd=32,
                                   lr=1e-2, seed=0, sample_length=30, samples=1)
    assert len(result.losses) == 40
    assert result.losses[0] == pytest.approx(np.log(len(vocab)), abs=0.05)
    assert falls(result.losses) > 0.8  # measured
    assert result.val_loss < 3.5
    assert result.sample.startswith("Alice ") and len(result.sample) == len("Alice ") + 30
    assert set(result.sample) <= set(vocab.chars)


@pytest.mark.parametrize("example", ["char_rnn", "char_gpt"])
def test_the_same_losses_with_and_without_jit(example: str) -> None:
    small = {"char_rnn": dict(seq_len=4, embed=8, hidden=16), "char_gpt": dict(block_size=8, n_layer=1, n_head=2,
                                                                              n_embd=16)}[example]
    train = {"char_rnn": char_rnn.train, "char_gpt": char_gpt.train}[example]
    runs = [train(steps=6, batch_size=4, seed=1, samples=0, **small, jit=jit)[0].losses for jit in (False, True)]
    np.testing.assert_allclose(runs[1], runs[0], rtol=1e-4, atol=1e-5)

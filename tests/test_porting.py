"""Porting: four PyTorch training scripts, written the way PyTorch users write them (an MLP, a CNN, an LSTM and a
small transformer), run on torch and then on fusegrad with only their import lines changed.

Each script trains on small synthetic data, evaluates, saves its state_dict, loads it into a fresh model and
evaluates again. The test checks, for both frameworks, that training lowers the loss and beats chance on held-out
data, and that the checkpoint restores the exact eval outputs; and that fusegrad ends in the same range as torch
(initial weights differ, so only loosely). The scripts read no files and write theirs into a fresh directory.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors import safe_open

# A script starts with exactly these lines; porting it to fusegrad replaces them and nothing else.
TORCH_IMPORTS = """\
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
"""
FUSEGRAD_IMPORTS = """\
import fusegrad as torch
from fusegrad import nn
import fusegrad.nn.functional as F
from fusegrad.data import DataLoader, TensorDataset
"""

MLP_SCRIPT = TORCH_IMPORTS + '''
torch.manual_seed(0)

# 6x6 "images" of 3 classes: the label is the argmax of a fixed random linear map of the pixels
images = torch.randn(800, 1, 6, 6)
projection = torch.randn(36, 3)
labels = (images.view(800, -1) @ projection).argmax(dim=1)
train_loader = DataLoader(TensorDataset(images[:640], labels[:640]), batch_size=32, shuffle=True)
test_loader = DataLoader(TensorDataset(images[640:], labels[640:]), batch_size=64)


class MLP(nn.Module):
    def __init__(self, in_features=36, hidden=64, num_classes=3):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, num_classes)

    def forward(self, x):
        x = x.view(x.size(0), -1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


model = MLP()
print(f"{sum(p.numel() for p in model.parameters())} parameters")
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
losses = []
for epoch in range(3):
    model.train()
    for x, y in train_loader:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())

model.eval()
correct = 0
with torch.no_grad():
    for x, y in test_loader:
        correct += (model(x).argmax(1) == y).sum().item()
    test_x, test_y = images[640:], labels[640:]
    out = model(test_x)
    accuracy = (out.argmax(1) == test_y).float().mean().item()
assert correct == round(accuracy * len(test_y))
print(f"loss {losses[0]:.3f} -> {losses[-1]:.3f}, test accuracy {accuracy:.3f}")

torch.save(model.state_dict(), "mlp.pt")
restored = MLP()
restored.load_state_dict(torch.load("mlp.pt"))
restored.eval()
with torch.no_grad():
    restored_out = restored(test_x)
'''

CNN_SCRIPT = TORCH_IMPORTS + '''
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
torch.manual_seed(0)

# 12x12 images of 2 classes: a brighter top half or a brighter bottom half, under noise
n = 256
labels = torch.randint(0, 2, (n,))
rows = torch.arange(12).view(1, 1, 12, 1)
top = (rows < 6).float()
images = torch.randn(n, 1, 12, 12) + torch.where(labels.view(n, 1, 1, 1) == 1, top, 1.0 - top)
train_loader = DataLoader(TensorDataset(images[:192], labels[:192]), batch_size=32, shuffle=True)


class SmallCNN(nn.Module):
    def __init__(self, num_classes=2):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, kernel_size=3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.25),
            nn.Linear(16 * 3 * 3, 32),
            nn.ReLU(),
            nn.Linear(32, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


model = SmallCNN().to(device)
optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
criterion = nn.CrossEntropyLoss()
losses = []
for epoch in range(3):
    model.train()
    for x, y in train_loader:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())

model.eval()
test_x, test_y = images[192:].to(device), labels[192:].to(device)
with torch.no_grad():
    out = model(test_x)
    _, predicted = torch.max(out, 1)
    accuracy = (predicted == test_y).float().mean().item()
print(f"loss {losses[0]:.3f} -> {losses[-1]:.3f}, test accuracy {accuracy:.3f}")

torch.save(model.state_dict(), "cnn.pt")
restored = SmallCNN().to(device)
restored.load_state_dict(torch.load("cnn.pt", map_location=device))
restored.eval()
with torch.no_grad():
    restored_out = restored(test_x)
'''

LSTM_SCRIPT = TORCH_IMPORTS + '''
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
torch.manual_seed(0)

# sequences of 10 tokens out of 10; the label says whether token 7 occurs anywhere in the sequence
vocab_size, seq_len, n = 10, 10, 320
tokens = torch.randint(0, vocab_size, (n, seq_len))
labels = (tokens == 7).any(dim=1).long()
train_loader = DataLoader(TensorDataset(tokens[:256], labels[:256]), batch_size=32, shuffle=True)
test_loader = DataLoader(TensorDataset(tokens[256:], labels[256:]), batch_size=64)


class LSTMClassifier(nn.Module):
    def __init__(self, vocab_size, embed_dim=16, hidden_dim=32, num_classes=2):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden_dim, batch_first=True)
        self.fc = nn.Linear(hidden_dim, num_classes)

    def forward(self, x):
        out, (h_n, c_n) = self.lstm(self.embedding(x))
        return self.fc(h_n[-1])


@torch.no_grad()
def evaluate(model, loader):
    model.eval()
    correct = 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        correct += (model(x).argmax(dim=1) == y).sum().item()
    return correct / len(loader.dataset)


model = LSTMClassifier(vocab_size).to(device)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
criterion = nn.CrossEntropyLoss()
losses = []
for epoch in range(4):
    model.train()
    for x, y in train_loader:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        optimizer.step()
        losses.append(loss.item())
accuracy = evaluate(model, test_loader)
print(f"loss {losses[0]:.3f} -> {losses[-1]:.3f}, test accuracy {accuracy:.3f}")

test_x = tokens[256:].to(device)
with torch.no_grad():
    out = model(test_x)
torch.save(model.state_dict(), "lstm.pt")
restored = LSTMClassifier(vocab_size).to(device)
restored.load_state_dict(torch.load("lstm.pt", weights_only=True))
restored.eval()
with torch.no_grad():
    restored_out = restored(test_x)
'''

TRANSFORMER_SCRIPT = TORCH_IMPORTS + '''import math

torch.manual_seed(0)

# next-token prediction on sequences that count up modulo the vocabulary from a random start
vocab_size, seq_len, n = 12, 16, 256
starts = torch.randint(0, vocab_size, (n, 1))
sequences = (starts + torch.arange(seq_len + 1)) % vocab_size
inputs, targets = sequences[:, :-1], sequences[:, 1:]
train_loader = DataLoader(TensorDataset(inputs[:192], targets[:192]), batch_size=32, shuffle=True)


class TinyTransformer(nn.Module):
    def __init__(self, vocab_size, d_model=32, nhead=4, num_layers=2, max_len=64):
        super().__init__()
        self.d_model = d_model
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(max_len, d_model)
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward=64, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=num_layers)
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, x):
        t = x.size(1)
        positions = torch.arange(t).unsqueeze(0)
        h = self.tok_emb(x) * math.sqrt(self.d_model) + self.pos_emb(positions)
        causal_mask = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)  # True: may not attend
        h = self.encoder(h, mask=causal_mask)
        return self.head(self.ln_f(h))


model = TinyTransformer(vocab_size)
epochs = 3
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * len(train_loader))
losses = []
for epoch in range(epochs):
    model.train()
    for x, y in train_loader:
        optimizer.zero_grad()
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, vocab_size), y.reshape(-1))
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
final_lr = scheduler.get_last_lr()[0]

model.eval()
test_x, test_y = inputs[192:], targets[192:]
with torch.no_grad():
    out = model(test_x)
    accuracy = (out.argmax(-1) == test_y).float().mean().item()
print(f"loss {losses[0]:.3f} -> {losses[-1]:.3f}, test accuracy {accuracy:.3f}, lr {final_lr:.2e}")

torch.save(model.state_dict(), "transformer.pt")
restored = TinyTransformer(vocab_size)
restored.load_state_dict(torch.load("transformer.pt"))
restored.eval()
with torch.no_grad():
    restored_out = restored(test_x)
'''

# name: (script, checkpoint file, steps per epoch, accuracy both frameworks must reach on held-out data)
SCRIPTS = {
    "mlp": (MLP_SCRIPT, "mlp.pt", 20, 0.75),        # 3 classes: chance 0.33
    "cnn": (CNN_SCRIPT, "cnn.pt", 6, 0.9),          # 2 balanced classes: chance 0.5
    "lstm": (LSTM_SCRIPT, "lstm.pt", 8, 0.85),      # 2 classes, 65% positive
    "transformer": (TRANSFORMER_SCRIPT, "transformer.pt", 6, 0.9),  # 12 tokens: chance 0.08
}


def port(script: str) -> str:
    """The script with its torch import block swapped for fusegrad's: the only change a user makes."""
    assert script.startswith(TORCH_IMPORTS)
    return FUSEGRAD_IMPORTS + script[len(TORCH_IMPORTS):]


def run_script(source: str, name: str, workdir: Path) -> dict[str, Any]:
    """exec the script as __main__ in a fresh namespace with `workdir` as the current directory; its globals."""
    workdir.mkdir()
    namespace: dict[str, Any] = {"__name__": "__main__"}
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        exec(compile(source, f"<{name}>", "exec"), namespace)
    finally:
        os.chdir(cwd)
    return namespace


def summary(ns: dict[str, Any], steps_per_epoch: int) -> tuple[float, float]:
    """(first training loss, mean loss over the last epoch)."""
    losses = ns["losses"]
    assert all(isinstance(v, float) and np.isfinite(v) for v in losses), "loss.item() must give finite floats"
    return losses[0], float(np.mean(losses[-steps_per_epoch:]))


def test_the_ported_scripts_differ_only_in_their_imports() -> None:
    for name, (script, *_) in SCRIPTS.items():
        torch_lines, fg_lines = script.splitlines(), port(script).splitlines()
        head = len(TORCH_IMPORTS.splitlines())
        assert len(torch_lines) == len(fg_lines), name
        assert torch_lines[head:] == fg_lines[head:], name
        assert all("import" in line for line in fg_lines[:head]) and "fusegrad" not in script, name


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_pytorch_script_runs_on_fusegrad_after_changing_imports(name: str, tmp_path: Path) -> None:
    script, checkpoint, steps_per_epoch, min_accuracy = SCRIPTS[name]
    results = {}
    for framework, source in (("torch", script), ("fusegrad", port(script))):
        start = time.perf_counter()
        ns = run_script(source, f"{name}-{framework}", tmp_path / framework)
        first, final = summary(ns, steps_per_epoch)
        results[framework] = ns
        what = f"{name} on {framework} ({time.perf_counter() - start:.1f} s)"
        assert len(ns["losses"]) >= 3 * steps_per_epoch, what
        assert final < 0.7 * first, f"{what}: the loss went from {first:.3f} to {final:.3f}"
        assert ns["accuracy"] >= min_accuracy, f"{what}: held-out accuracy {ns['accuracy']:.3f}"
        # the checkpoint round trip: a freshly initialised model, loaded from the file, gives the same eval outputs
        out, restored = np.asarray(ns["out"].tolist()), np.asarray(ns["restored_out"].tolist())
        assert out.shape == restored.shape and out.ndim >= 2, what
        np.testing.assert_allclose(restored, out, rtol=1e-5, atol=1e-6, err_msg=f"{what}: restored model's outputs")
        assert (tmp_path / framework / checkpoint).is_file(), what

    torch_ns, fg_ns = results["torch"], results["fusegrad"]
    (t_first, t_final), (f_first, f_final) = summary(torch_ns, steps_per_epoch), summary(fg_ns, steps_per_epoch)
    # the same model starts near the same loss and ends in the same range (weights and shuffles differ)
    assert abs(f_first - t_first) < 0.25 * t_first, f"{name}: first loss {f_first:.3f} vs torch's {t_first:.3f}"
    assert abs(f_final - t_final) < 0.25 * t_first, f"{name}: final loss {f_final:.3f} vs torch's {t_final:.3f}"
    assert len(fg_ns["losses"]) == len(torch_ns["losses"]), name
    assert np.asarray(fg_ns["out"].tolist()).shape == np.asarray(torch_ns["out"].tolist()).shape, name
    if "final_lr" in torch_ns:
        assert fg_ns["final_lr"] == pytest.approx(torch_ns["final_lr"], rel=1e-9, abs=1e-12), name
    # fusegrad's checkpoint is a safetensors file (never a pickle) with the same keys as torch's state_dict
    with safe_open(str(tmp_path / "fusegrad" / checkpoint), framework="numpy") as f:
        assert sorted(f.keys()) == sorted(torch_ns["model"].state_dict()), name

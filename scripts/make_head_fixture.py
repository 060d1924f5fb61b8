"""Reference numbers for tests/it/head.rs: two Adam steps of a small MLP, in float64 numpy.

An implementation independent of the Rust head: forward (Linear, ReLU, Linear, ReLU, Linear),
mean softmax cross-entropy via log-sum-exp, hand-derived backward, and Adam with PyTorch's exact
semantics (torch.optim.Adam, weight_decay as an L2 term added to the gradient, bias correction):

    g += wd * p;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g
    p -= lr/(1-b1**t) * m / (sqrt(v)/sqrt(1-b2**t) + eps)

Weights are stored (d_in, d_out) as in the Rust head. Dropout is 0 so the result needs no RNG.
Run (from the checkout): .venv/bin/python scripts/make_head_fixture.py > tests/fixtures/head/adam_two_steps.json
"""
import json
import numpy as np

DIMS = [6, 5, 4, 3]
BATCH = 4
ADAM = {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01}


def forward_backward(layers, x, y):
    acts, zs = [x], []
    h = x
    for i, (w, b) in enumerate(layers):
        z = h @ w + b
        zs.append(z)
        h = np.maximum(z, 0.0) if i + 1 < len(layers) else z
        if i + 1 < len(layers):
            acts.append(h)
    logits = zs[-1]
    mx = logits.max(axis=1, keepdims=True)
    lse = mx[:, 0] + np.log(np.exp(logits - mx).sum(axis=1))
    loss = float(np.mean(lse - logits[np.arange(len(y)), y]))
    p = np.exp(logits - lse[:, None])
    dz = p.copy()
    dz[np.arange(len(y)), y] -= 1.0
    dz /= len(y)
    grads = [None] * len(layers)
    for i in reversed(range(len(layers))):
        w, _ = layers[i]
        grads[i] = (acts[i].T @ dz, dz.sum(axis=0))
        if i > 0:
            dz = (dz @ w.T) * (zs[i - 1] > 0)
    return loss, grads


def adam_step(layers, grads, state, t):
    b1, b2, lr, eps, wd = ADAM["beta1"], ADAM["beta2"], ADAM["lr"], ADAM["eps"], ADAM["weight_decay"]
    bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t
    out = []
    for li, ((w, b), (gw, gb)) in enumerate(zip(layers, grads)):
        new = []
        for pi, (p, g) in enumerate(((w, gw), (b, gb))):
            g = g + wd * p
            m, v = state[(li, pi)]
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            state[(li, pi)] = (m, v)
            new.append(p - (lr / bc1) * m / (np.sqrt(v) / np.sqrt(bc2) + eps))
        out.append(tuple(new))
    return out


def main():
    rng = np.random.default_rng(20261127)
    layers = [(rng.uniform(-0.6, 0.6, (a, b)), rng.uniform(-0.3, 0.3, b)) for a, b in zip(DIMS, DIMS[1:])]
    layers = [(w.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64)) for w, b in layers]
    state = {(li, pi): (0.0, 0.0) for li in range(len(layers)) for pi in range(2)}
    fixture = {
        "script": "scripts/make_head_fixture.py",
        "dims": DIMS,
        "adam": ADAM,
        "init": [{"w": w.tolist(), "b": b.tolist()} for w, b in layers],
        "steps": [],
    }
    for t in (1, 2):
        x = rng.normal(0.0, 1.0, (BATCH, DIMS[0])).astype(np.float32).astype(np.float64)
        y = rng.integers(0, DIMS[-1], BATCH)
        loss, grads = forward_backward(layers, x, y)
        layers = adam_step(layers, grads, state, t)
        fixture["steps"].append({
            "x": x.tolist(),
            "y": y.tolist(),
            "loss": loss,
            "grads": [{"w": gw.tolist(), "b": gb.tolist()} for gw, gb in grads],
            "params_after": [{"w": w.tolist(), "b": b.tolist()} for w, b in layers],
        })
    print(json.dumps(fixture, indent=1))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""PyTorch reference for dialogym's ILQL training step (benches/train.rs runs it).

The same network, loss and optimizer as policies/src/{model,ilql,optim}.rs, on synthetic
data of the same shapes: sum-mode EmbeddingBags over hashed features (2^14 state buckets,
2^12 action buckets), hidden 256, bilinear heads of width 128 over all candidates, two Q
heads with target copies (Polyak), a V head (expectile), CQL over the candidates, a BC term
on a policy head, AdamW. Prints one JSON line: {"steps_per_s": ..., ...}.

Usage: python3 scripts/bench_train_reference.py --steps 200 --batch 256 --threads 2 [--device cpu|cuda]
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class PairHead(nn.Module):
    def __init__(self, h, d, said_classes):
        super().__init__()
        self.ws = nn.Linear(h, d)
        self.ua = nn.Linear(h, d)
        self.bias = nn.Linear(h, 1)
        self.said = nn.Parameter(torch.zeros(said_classes))

    def all(self, hs, u, said):  # (B,H), (C,H), (B,C) long -> (B,C)
        return self.ws(hs) @ self.ua(u).T + self.bias(u).squeeze(1) + self.said[said]

    def pairs(self, hs, ua, said_a):  # (B,H), (B,H), (B,) -> (B,)
        return (self.ws(hs) * self.ua(ua)).sum(-1) + self.bias(ua).squeeze(1) + self.said[said_a]


class Network(nn.Module):
    def __init__(self, sb, ab, h, d, said_classes, full):
        super().__init__()
        self.state_bag = nn.EmbeddingBag(sb, h, mode="sum")
        self.state_l1 = nn.Linear(h, h)
        self.action_bag = nn.EmbeddingBag(ab, h, mode="sum")
        self.action_l1 = nn.Linear(h, h)
        self.q = nn.ModuleList([PairHead(h, d, said_classes) for _ in range(2)])
        self.full = full
        if full:
            self.v1, self.v2 = nn.Linear(h, h), nn.Linear(h, 1)
            self.pi = PairHead(h, d, said_classes)

    def states(self, ids, offsets):
        return F.relu(self.state_l1(F.relu(self.state_bag(ids, offsets))))

    def actions(self, ids, offsets):
        return F.relu(self.action_l1(F.relu(self.action_bag(ids, offsets))))

    def value(self, hs):
        return self.v2(F.relu(self.v1(hs))).squeeze(1)


def bags(lists, device):
    ids = torch.tensor([i for l in lists for i in l], dtype=torch.long, device=device)
    offsets = torch.tensor([0] + [len(l) for l in lists[:-1]], dtype=torch.long, device=device).cumsum(0)
    return ids, offsets


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--candidates", type=int, default=356)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    sb, ab, h, d, said_classes = 1 << 14, 1 << 12, 256, 128, 9
    online = Network(sb, ab, h, d, said_classes, True).to(dev)
    target = Network(sb, ab, h, d, said_classes, False).to(dev)
    target.load_state_dict({k: v for k, v in online.state_dict().items() if k in target.state_dict()})
    opt = torch.optim.AdamW(online.parameters(), lr=1e-3, weight_decay=0.0)
    C = args.candidates
    cand = [torch.randint(0, ab, (8,), generator=g).tolist() for _ in range(C)]
    c_ids, c_off = bags(cand, dev)
    n_states = 50_000
    states = [torch.randint(0, sb, (int(torch.randint(2, 120, (1,), generator=g)),), generator=g).tolist() for _ in range(n_states)]
    tau, gamma, cql_w, bc_w, alpha = 0.8, 1.0, 1.0, 1.0, 0.005
    t_params = dict(target.named_parameters())
    pairs = [(t_params[k], p) for k, p in online.named_parameters() if k in t_params]

    def step(i):
        gen = torch.Generator().manual_seed(i)
        idx = torch.randint(0, n_states - 1, (args.batch,), generator=gen).tolist()
        s_ids, s_off = bags([states[j] for j in idx], dev)
        n_ids, n_off = bags([states[j + 1] for j in idx], dev)
        a = torch.randint(0, C, (args.batch,), generator=gen).to(dev)
        r = torch.full((args.batch,), -1.0, device=dev)
        done = (torch.rand(args.batch, generator=gen) < 0.1).float().to(dev)
        said = torch.zeros(args.batch, C, dtype=torch.long, device=dev)
        said_a = torch.zeros(args.batch, dtype=torch.long, device=dev)
        u = online.actions(c_ids, c_off)
        hs = online.states(s_ids, s_off)
        with torch.no_grad():
            v_next = online.value(online.states(n_ids, n_off))
            y = r + gamma * (1 - done) * v_next
            u_t = target.actions(c_ids, c_off)
            h_t = target.states(s_ids, s_off)
            q_bar = torch.minimum(target.q[0].pairs(h_t, u_t[a], said_a), target.q[1].pairs(h_t, u_t[a], said_a))
        l_q, l_cql = 0.0, 0.0
        for head in online.q:
            q_all = head.all(hs, u, said)
            q_data = q_all.gather(1, a[:, None]).squeeze(1)
            l_q = l_q + ((q_data - y) ** 2).mean()
            l_cql = l_cql + (torch.logsumexp(q_all, -1) - q_data).mean()
        v = online.value(hs)
        diff = q_bar - v
        w = torch.where(diff >= 0, torch.full_like(diff, tau), torch.full_like(diff, 1 - tau))
        l_v = (w * diff**2).mean()
        logits = online.pi.all(hs, u, said)
        l_bc = (torch.logsumexp(logits, -1) - logits.gather(1, a[:, None]).squeeze(1)).mean()
        loss = l_q + l_v + cql_w * l_cql + bc_w * l_bc
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            for t, o in pairs:
                t.lerp_(o, alpha)

    for i in range(5):
        step(i)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(args.steps):
        step(100 + i)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    secs = time.perf_counter() - start
    print(json.dumps({"runtime": f"pytorch {torch.__version__}", "device": args.device, "threads": args.threads,
                      "batch": args.batch, "steps": args.steps, "steps_per_s": args.steps / secs,
                      "transitions_per_s": args.steps * args.batch / secs}))


if __name__ == "__main__":
    main()

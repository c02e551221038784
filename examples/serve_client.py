#!/usr/bin/env python3
"""Drive `dialogym serve` with `requests`: a random agent and a scripted greedy agent.

Starts `dialogym serve` (20 Questions, the table oracle) on a free loopback port, plays
--episodes episodes with each agent over HTTP, runs `dialogym eval` with the same seed for
the same agents, and checks that the served success rates agree with eval's within the 95%
interval of their difference. Exits 1 if they do not.

    python3 examples/serve_client.py --bin target/release/dialogym --episodes 500

- random: picks one of the observation's `candidates` uniformly (Python's own seeded
  generator), the counterpart of eval's `uniform` agent;
- greedy: asks the server's reference agent (`POST /suggest`, `--reference-agent greedy-eig`)
  and sends its utterance as the action: eval's `greedy-eig`, played through the environment.
"""
import argparse
import json
import math
import random
import re
import subprocess
import sys
import tempfile

import requests


def start_server(bin_path, scenario, persona, seed):
    proc = subprocess.Popen(
        [bin_path, "serve", "--scenario", scenario, "--persona", persona, "--seed", str(seed),
         "--port", "0", "--reference-agent", "greedy-eig"],
        stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    m = re.search(r"http://(127\.0\.0\.1:\d+)", line)
    if not m:
        proc.kill()
        sys.exit(f"the server did not start: {line.strip()}")
    return proc, "http://" + m.group(1)


def play(session, url, policy, episodes, rng):
    successes, returns = [], []
    for i in range(episodes):
        r = session.post(f"{url}/reset", json={"episode": i}, timeout=30)
        r.raise_for_status()
        reset = r.json()
        eid, obs = reset["episode_id"], reset["observation"]
        done, ret, success = False, 0.0, False
        while not done:
            if policy == "random":
                action = rng.choice(obs["candidates"])
            else:
                s = session.post(f"{url}/suggest", json={"episode_id": eid, "agent": "greedy-eig"}, timeout=30)
                s.raise_for_status()
                action = s.json()["action"]["message"]
            r = session.post(f"{url}/step", json={"episode_id": eid, "action": {"message": action},
                                                  "candidates": policy == "random"}, timeout=30)
            r.raise_for_status()
            step = r.json()
            obs, done = step["observation"], step["done"]
            ret += step["reward"]
            success = step["metadata"]["success"]
        successes.append(1.0 if success else 0.0)
        returns.append(ret)
    return successes, returns


def mean_ci(xs):
    n = len(xs)
    m = sum(xs) / n
    var = sum((x - m) ** 2 for x in xs) / (n - 1) if n > 1 else 0.0
    return m, 1.96 * math.sqrt(var / n)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="target/release/dialogym")
    ap.add_argument("--scenario", default="twenty-questions")
    ap.add_argument("--persona", default="oracle")
    ap.add_argument("--episodes", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--agents", default="uniform,greedy-eig", help="comma-separated: uniform, greedy-eig")
    args = ap.parse_args()
    agents = [a.strip() for a in args.agents.split(",") if a.strip()]
    for a in agents:
        if a not in ("uniform", "greedy-eig"):
            sys.exit(f"unknown agent {a!r}: this client plays uniform and greedy-eig")

    proc, url = start_server(args.bin, args.scenario, args.persona, args.seed)
    try:
        session = requests.Session()
        assert session.get(f"{url}/health", timeout=10).json() == {"status": "healthy"}
        served = {}
        for a in agents:
            if a == "uniform":
                served[a] = play(session, url, "random", args.episodes, random.Random(args.seed))
            else:
                served[a] = play(session, url, "greedy", args.episodes, None)
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        cmd = [args.bin, "eval", "--scenario", args.scenario, "--persona", args.persona]
        for a in agents:
            cmd += ["--agent", a]
        cmd += ["--episodes", str(args.episodes), "--seed", str(args.seed), "--json", f.name]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        evaluated = {r["agent"]: r for r in json.load(open(f.name))}

    ok = True
    print(f"{'agent':<12} {'served success':>22} {'eval success':>22} {'served return':>16} {'eval return':>16}  within")
    for agent, (succ, rets) in served.items():
        m, ci = mean_ci(succ)
        rm, rci = mean_ci(rets)
        e = evaluated[agent]
        em, eci = e["success"]["mean"], e["success"]["ci95"]
        # The 95% interval of the difference of two independent means.
        within = abs(m - em) <= math.sqrt(ci ** 2 + eci ** 2) + 1e-12
        ok &= within
        print(f"{agent:<12} {m:>14.3f} ± {ci:.3f} {em:>14.3f} ± {eci:.3f} {rm:>9.2f} ± {rci:.2f} "
              f"{e['return']['mean']:>9.2f} ± {e['return']['ci95']:.2f}  {'yes' if within else 'NO'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

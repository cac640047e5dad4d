"""bench.env: which commit a result is attributed to."""
from bench import env


def test_git_sha_env_wins_over_checkout(monkeypatch):
    # a tree copied to the GPU machine can carry a stale .git; the sender's $GIT_SHA names the commit
    monkeypatch.setattr(env, "_GIT_CACHE", {})
    monkeypatch.setenv("GIT_SHA", "0123456789ab")
    monkeypatch.setattr(env, "_git", lambda *a: "stale-sha")
    g = env.git_info()
    assert g["git_sha"] == "0123456789ab" and g["git_dirty"] is False
    assert env.git_sha_label() == "0123456789ab"


def test_git_sha_from_checkout_without_env(monkeypatch):
    monkeypatch.setattr(env, "_GIT_CACHE", {})
    monkeypatch.delenv("GIT_SHA", raising=False)
    answers = {"rev-parse": "fedcba987654", "status": " M x.py"}
    monkeypatch.setattr(env, "_git", lambda *a: answers.get(a[0], "") if a[-1] != "HEAD" or a[1] != "--abbrev-ref" else "main")
    assert env.git_sha_label() == "fedcba987654-dirty"


def test_full_git_sha_env_is_shortened_like_every_row(monkeypatch):
    monkeypatch.setattr(env, "_GIT_CACHE", {})
    monkeypatch.setenv("GIT_SHA", "eb7582eb04945131a1f16b817b8988c952ad2f77")
    assert env.git_info()["git_sha"] == "eb7582eb0494"
    monkeypatch.setattr(env, "_GIT_CACHE", {})
    monkeypatch.setenv("GIT_SHA", "not-a-sha-but-a-label-longer")  # anything else is kept as given
    assert env.git_info()["git_sha"] == "not-a-sha-but-a-label-longer"

"""One redaction for every way a DSN is written (issue 7, finding 5)."""

from collections.abc import Iterator

import pytest

from connbench.infra import postgres
from connbench.model import dsn
from connbench.model.errors import BadInput

SECRET = "zq9Se"  # the start of every password below: finding it anywhere is a leak


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    dsn.forget_all()
    yield
    dsn.forget_all()


# Each is a whole message a user or a file could see.
LEAKY = [
    "postgresql://bob:zq9Se_pw@db:5432/app?sslmode=require",
    "postgresql://bob:zq9Se%25w@db/app",  # the %-escaped form the old redaction kept
    "postgres://:zq9Se@db/app",
    "postgresql:/bob:zq9Se@db/app",  # one slash
    "postgresql:bob:zq9Se@db/app",  # none
    "postgresql:///bob:zq9Se@db/app",  # three
    "mysql://root:zq9Se@localhost/app",
    "bob:zq9Se@db:5432/app",
    "host=db user=bob password=zq9Se dbname=app",
    "host=db password = zq9Se dbname=app",
    "host=db password='zq9Se with spaces' dbname=app",
    r"host=db password='zq9Se \'quoted\' too' dbname=app",
    'host=db password="zq9Se double" dbname=app',
    "postgresql://db/app?user=bob&password=zq9Se&sslmode=disable",
    "sslpassword=zq9Se host=db",
    "PGPASSWORD=zq9Se connbench run",
    'invalid URI: "postgresql://bob:zq9Se@[::1/app"',  # libpq quoting the whole URI
    "error: connection to server failed: postgresql://u:zq9Se@h:5432/x\nsecond line",
]


@pytest.mark.parametrize("text", LEAKY)
def test_redact_hides_every_spelling(text: str) -> None:
    assert SECRET not in dsn.redact(text)
    assert dsn.MASK in dsn.redact(text)


def test_redact_leaves_ordinary_text_alone() -> None:
    for text in (
        "postgresql://bob@db:5432/app",
        "ERROR: relation x@y does not exist",
        "at 12:30 user@example.org",
        "pool=4..4 c=32",
        "--app: expected NAME=MODULE:ATTR[@DIR], got 'mine'",
    ):
        assert dsn.redact(text) == text


def test_remembered_secret_is_masked_wherever_it_appears() -> None:
    # libpq quotes only a piece of a malformed DSN: no pattern can know it is a password.
    dsn.remember("postgresql://bob:zq9Se%zz@db/app")
    assert SECRET not in dsn.redact('invalid percent-encoded token: "zq9Se%zz"')
    dsn.remember("host=db password='zq9Se w\\'x'")
    assert SECRET not in dsn.redact("the password was zq9Se w'x, decoded")


def test_remember_every_encoding_of_the_password() -> None:
    dsn.remember("postgresql://bob:zq9Se%20x%25@db/app")
    for spelling in ("zq9Se x%", "zq9Se%20x%25", "zq9Se%20x%2525"):
        assert SECRET not in dsn.redact(f"<{spelling}>"), spelling


def test_redact_all_walks_a_document() -> None:
    doc = {"a": ["password=zq9Se1", {"postgresql://u:zq9Se2@h": 1}], "n": 3, "b": None}
    out = dsn.redact_all(doc)
    assert SECRET not in repr(out)
    assert out["n"] == 3 and out["b"] is None


@pytest.mark.parametrize(
    "value",
    [
        "postgresql:/bob:zq9Se@db/app",
        "mysql://root:zq9Se@localhost/app",
        "postgresql://bob:zq9Se@[::1/app",
        "host=db password=zq9Se port=notaport dbname",
    ],
)
def test_backend_errors_do_not_echo_the_password(value: str) -> None:
    with pytest.raises(BadInput) as caught:
        postgres.parse_backend(value)
    assert SECRET not in str(caught.value)
    assert "--postgres" in str(caught.value)

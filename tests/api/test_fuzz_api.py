"""``make fuzz``: schemathesis against the registry's own OpenAPI, with an admin key, a read
key and no key; every response must be in the spec (status, content type, headers, body) and
none may be a 5xx.

One test per key kind, each on a fresh registry in its own tmp dir (so the admin key's writes
never reach the other kinds). For every operation it runs schemathesis's three phases
(explicit examples, the deterministic coverage cases, then Hypothesis fuzzing with positive and
negative data) once with free path parameters and again with them pinned to the published
persona and its versions, so the routes get past 404 to their 200s; then the blob routes with
the pack's real refs and signed URLs. Hypothesis is derandomized, so a run sends the same
requests every time. Every failure is collected (not just the first) and the test fails
listing each distinct one; it prints ``fuzz <kind>: N requests, 0 5xx, 0 spec violations``.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from registry_support import PUBLISHED, Registry, make_registry
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup, ServerError
from schemathesis.generation.hypothesis.builder import HypothesisTestConfig, HypothesisTestMode, create_test
from schemathesis.generation.overrides import Override
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

pytestmark = [pytest.mark.fuzz, pytest.mark.slow]

KINDS = ("admin", "read", None)
MIN_REQUESTS = 1000  # per key kind: the acceptance figure
MAX_EXAMPLES = 60  # Hypothesis examples per operation and pass (the coverage cases come on top)
# Path parameters per pass: free (mostly unknown personas), the published persona, then its
# published v1, `latest` and pending v2 (a pass runs only on operations with all its parameters).
PASSES: tuple[dict[str, str], ...] = (
    {},
    {"persona_id": PUBLISHED},
    {"persona_id": PUBLISHED, "version": "1"},
    {"persona_id": PUBLISHED, "version": "latest"},
    {"persona_id": PUBLISHED, "version": "2"},
)
# What "in the spec" means: status, content type, headers and body as documented, Allow on a
# 405, and no 5xx; plus: a key-protected route refuses a request without its key, an
# undeclared method is a 405, and a missing required header is refused.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    allow_header_conformance,
    ignored_auth,
    unsupported_method,
    missing_required_header,
]
# Left out, each for a reason the schema cannot express:
# positive_data_acceptance: `version` is a plain string, so "0" is schema-valid yet a documented
#   400, and an upload's schema-valid parts may hold no file, bytes of another kind or a non-JSON
#   manifest: documented 400/415/422.
# negative_data_rejection: a type-mutated multipart body with more than max_upload_files parts
#   gets the documented 413 too_many_files (counted while parsing, before types), not in its list.
SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,  # the same requests every run: CI cannot flake on a lucky draw
    database=None,  # nothing written to .hypothesis/
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],  # failures are collected, never raised: nothing to shrink
)


@dataclass
class Fuzzer:
    """Sends cases with one key kind and tallies statuses and failures (all of them, not the first)."""

    headers: dict[str, str]
    requests: int = 0
    server_errors: int = 0
    violation_count: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    # (failure title, operation, status) -> its first report, so one defect is listed once.
    violations: dict[tuple[str, str, int], str] = field(default_factory=dict)

    def one(self, case: schemathesis.Case) -> None:
        self.requests += 1
        try:
            response = case.call(headers=self.headers)
        except Exception as exc:
            # In-process, an unhandled error is re-raised here after the app sent its 500 problem.
            self.server_errors += 1
            self.statuses[500] += 1
            key = (f"Unhandled {type(exc).__name__}", f"{case.method} {case.path}", 500)
            self.violations.setdefault(key, f"{key[0]}: {case.method} {case.formatted_path}: {exc!r:.300}")
            return
        self.statuses[response.status_code] += 1
        self.server_errors += response.status_code >= 500
        try:
            case.validate_response(response, checks=CHECKS, headers=self.headers)
        except (FailureGroup, Failure) as exc:
            failures = exc.exceptions if isinstance(exc, FailureGroup) else (exc,)
            self.violation_count += sum(not isinstance(f, ServerError) for f in failures)
            for failure in failures:
                key = (failure.title, f"{case.method} {case.path}", response.status_code)
                self.violations.setdefault(key, _describe(case, response, failure))

    def run(self, operation: schemathesis.APIOperation, path_parameters: dict[str, str]) -> None:
        """schemathesis's examples, coverage and fuzzing phases for one operation."""

        def test(case: schemathesis.Case) -> None:
            self.one(case)

        # schemathesis also draws from the global `random` outside Hypothesis's examples (the
        # coverage cases, some strategy choices): seeded per operation and pass, so what runs
        # before (another key kind, other tests) cannot change the requests; restored after.
        state = random.getstate()
        random.seed(f"{operation.label} {sorted(path_parameters.items())}")
        try:
            create_test(
                operation=operation,
                test_func=SETTINGS(test),
                config=HypothesisTestConfig(
                    project=operation.schema.config,
                    modes=list(HypothesisTestMode),
                    # The feed's long-poll would outlast the client's read timeout: no waiting.
                    override=Override(
                        path_parameters=dict(path_parameters),
                        query={"timeout": "0"} if operation.path == "/v1/events" else {},
                    ),
                ),
            )()
        finally:
            random.setstate(state)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    """The registry of the other API tests, without the wrong-key throttle: schemathesis's
    ignored_auth check sends a wrong key with every case, and past 20 of them every request from
    the test client, right key or not, would be a 429 that never reaches a route."""
    reg = make_registry(tmp_path, auth_failure_limit=10**9)
    yield reg
    reg.http.close()
    reg.meta.close()


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k or "none")
def test_fuzz_conforms_to_spec(registry: Registry, kind: str | None) -> None:
    started = time.monotonic()
    fuzzer = fuzz(registry, kind)
    name = kind or "none"
    print(
        f"\nfuzz {name}: {fuzzer.requests} requests, {fuzzer.server_errors} 5xx, "
        f"{fuzzer.violation_count} spec violations ({time.monotonic() - started:.1f} s; "
        f"statuses {dict(sorted(fuzzer.statuses.items()))})"
    )
    report = "\n\n".join(fuzzer.violations.values())
    assert fuzzer.server_errors == 0, report
    assert fuzzer.violation_count == 0, report
    assert fuzzer.statuses[429] == 0, "the wrong-key throttle answered instead of the routes"
    assert fuzzer.requests >= MIN_REQUESTS, f"only {fuzzer.requests} requests with the {name} key"


def fuzz(reg: Registry, kind: str | None) -> Fuzzer:
    """Every operation of the registry's OpenAPI, every phase, every pass, then the blob cases."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", reg.http.app)
    fuzzer = Fuzzer(reg.headers(kind))
    for result in schema.get_all_operations():
        operation = result.ok()
        for path_parameters in PASSES:
            if set(path_parameters) <= {p.name for p in operation.path_parameters}:
                fuzzer.run(operation, path_parameters)
    for case in _known_blob_cases(reg, schema):
        fuzzer.one(case)
    return fuzzer


def _known_blob_cases(reg: Registry, schema: schemathesis.BaseSchema) -> Iterator[schemathesis.Case]:
    """Requests random data never makes: the published pack's real blob refs resolved every
    way, and the signed URLs the registry hands out (valid, then tampered with)."""
    anchor = next(iter(reg.pack.anchor_sets.values()))[0]
    resolve = schema["/v1/assets/resolve"]["POST"]
    as_bytes = schema["/v1/assets/bytes"]["POST"]
    for ref in (anchor.image_ref, anchor.embedding_ref):  # a blob, and a matrix row
        for body in ({"ref": ref}, {"ref": ref, "mode": "url", "ttl_s": 60}):
            yield resolve.Case(body=body, media_type="application/json")
        yield as_bytes.Case(body={"ref": ref}, media_type="application/json")
    blob = schema["/v1/blobs/{digest}"]["GET"]
    url = urlsplit(reg.blobs.signed_url(anchor.image_ref, 60))
    query = dict(parse_qsl(url.query))
    digest = url.path.rsplit("/", 1)[1]
    for q in (query, {**query, "sig": "0" * 64}, {**query, "exp": "1"}):
        yield blob.Case(path_parameters={"digest": digest}, query=q)


def _describe(case: schemathesis.Case, response: schemathesis.Response, failure: Failure) -> str:
    body = response.content[:300].decode("utf-8", "replace")
    return (
        f"{failure.title}: {case.method} {case.formatted_path} -> {response.status_code} "
        f"{response.headers.get('content-type', ['-'])[0]}\n  {failure.message.strip()[:600]}\n"
        f"  query={case.query} headers={dict(case.headers or {})} "
        f"body={case.body!r:.200}\n  response: {body}"
    )

"""Knative's own ingress conformance suite against the local cluster (docs/conformance.md).

The suite is `knative.dev/networking/test/conformance/ingress` at the networking version that
knative.dev/serving v0.50.0 (Knative 1.23) requires, built by hack/build-conformance.sh into
bin/conformance/: the test binary `ingress.test` (one test, TestIngressConformance, whose 22 stable
subtests each create pods, Services and KIngress objects in the namespace `serving-tests` and send
requests through the ingress) and the six programs its pods run. Each program becomes an image the way
`ko` makes Knative's test images (static binary at /ko-app/<name> as the entrypoint, numeric non-root
user), named `<repository>/<name>:<tag>` as the suite's `--dockerrepo`/`--tag` template expects, and is
imported into every node's containerd: the suite's pods say `imagePullPolicy: IfNotPresent`, so no node
ever pulls.

How the suite reaches the ingress (conformance/ingress/util.go, CreateDialContext): it reads the
KIngress's `status.publicLoadBalancer.ingress[0].domainInternal` (`<service>.<namespace>.svc...`),
gets that Service, and with `--ingressendpoint` dials `<endpoint>:<nodePort>` of the Service port whose
`port` equals the URL's port (80 for http://, 443 for https://). Cluster-local tests (visibility*) run a
proxy pod that dials `status.privateLoadBalancer.ingress[0].domainInternal` on port 80 from inside the
cluster.

Pure parts (unit-tested): the image specs, the command line and environment of a run, the parser of
`go test -v` output and the verdict. Impure parts: import_images (ctr, root), preflight/ensure_namespace
(kubectl) and run_suite (the binary, with a timeout).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..processes import wait_until
from . import images
from .images import ImageFile, ImageSpec, build_archive
from .layout import KUBECONFIG, NODES, ROOT, NodeSpec

TOOLS_MODULE = ROOT / "hack" / "tools" / "knative-conformance"
BIN = ROOT / "bin" / "conformance"
KUBECTL = ROOT / "bin" / "kubectl"
LOG_DIR = ROOT / ".aifn" / "conformance"

NETWORKING_MODULE = "knative.dev/networking"
NETWORKING_VERSION = "v0.0.0-20260727162500-c7a7b772cac9"  # what knative.dev/serving v0.50.0 requires
SUITE_BINARY = "ingress.test"
TEST = "TestIngressConformance"
IMAGES = ("grpc-ping", "httpproxy", "retry", "runtime", "timeout", "wsserver")
IMAGE_REPOSITORY = "localhost/aifn/knative-conformance"  # --dockerrepo
TAG = "v1.23"  # --tag
NONROOT = "65532:65532"  # ko's nonroot base user, as for the Knative Serving images (knative.py)

NAMESPACE = "serving-tests"  # knative.dev/networking/test.ServingNamespace: fixed in the suite
INGRESS_CLASS = "aifn.ingress.networking.knative.dev"
INGRESS_ENDPOINT = NODES[0].ip  # a node address: the suite dials the gateway Service's nodePorts there
KINGRESS_CRD = "ingresses.networking.internal.knative.dev"
CLUSTER_SUFFIX = "cluster.local"
SERVICE_DOMAIN = "example.com"
# logstream (knative.dev/pkg/test/logstream) copies the logs of pods in these namespaces whose JSON
# `key` names a test object into that test's output; the suite defaults it to knative-serving.
SYSTEM_NAMESPACE = "knative-serving"
# Environment variables that change what the suite's pods run (TLS upstreams); never inherited.
UPSTREAM_ENV = ("UPSTREAM_TLS_CERT", "UPSTREAM_CA_CERT", "SERVER_NAME")

# The suite's subtests (conformance/ingress/run.go at NETWORKING_VERSION). Beta and alpha ones run only
# with --enable-beta / --enable-alpha, which are not passed.
STABLE_TESTS = (
    "basics", "basics/http2", "grpc", "grpc/split", "headers/pre-split", "headers/post-split",
    "headers/probe", "hosts/multiple", "dispatch/path", "dispatch/percentage",
    "dispatch/path_and_percentage", "dispatch/rule", "retry", "timeout", "tls", "update", "visibility",
    "visibility/split", "visibility/path", "ingressclass", "websocket", "websocket/split",
)
BETA_TESTS = ("host-rewrite", "headers/tags")
ALPHA_TESTS = ("httpoption",)
KNOWN_TESTS = STABLE_TESTS + BETA_TESTS + ALPHA_TESTS

# What the cluster's networking layer must pass, never skip (tests/cluster/test_ingress_conformance.py).
REQUIRED = (
    "basics", "basics/http2", "grpc", "headers/pre-split", "headers/post-split", "headers/probe",
    "hosts/multiple", "dispatch/path", "dispatch/percentage", "dispatch/rule", "timeout", "update",
    "visibility",
)

# Stable subtests deliberately skipped on this cluster, with the reason (passed as --skip-tests). The
# integrator fills this in after seeing results; a REQUIRED subtest must never be here.
SKIPPED: dict[str, str] = {}

SUITE_SKIP_MESSAGE = "Skipping the test in skip-test flag"  # run.go's skipFunc


class ConformanceError(RuntimeError):
    """The suite could not run (setup missing); the message says what to run."""


class SetupMissing(ConformanceError):
    """The cluster, the binaries or the networking layer are missing."""


class ConformanceFailure(AssertionError):
    """The suite ran and some subtests failed (or required ones did not pass); the message names them."""


# Images ----------------------------------------------------------------------------------------


def image_name(name: str, repository: str = IMAGE_REPOSITORY, tag: str = TAG) -> str:
    """The image the suite asks for: `{{.Repository}}/{{.Name}}:{{.Tag}}` (pkg/test ImagePath)."""
    if name not in IMAGES:
        raise ValueError(f"unknown conformance test image {name!r}; one of {', '.join(IMAGES)}")
    return f"{repository}/{name}:{tag}"


def image_spec(name: str, bin_dir: Path = BIN) -> ImageSpec:
    """The image of one test program: its static binary at /ko-app/<name>, the entrypoint, run as 65532."""
    link = bin_dir / name
    if not link.exists():
        raise SetupMissing(f"{link} is missing; run `bash hack/build-conformance.sh`")
    binary = link.resolve()  # the cached build, not the link (a layer would hold the symlink)
    target = f"/ko-app/{name}"
    return ImageSpec(
        name=image_name(name),
        files=(ImageFile(binary, target, 0o755),),
        entrypoint=(target,),
        user=NONROOT,
        env=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/ko-app",
             "KO_DATA_PATH=/var/run/ko"),
        labels={
            "org.opencontainers.image.source": "https://github.com/knative/networking",
            "org.opencontainers.image.version": NETWORKING_VERSION,
            "org.opencontainers.image.title": f"{NETWORKING_MODULE}/test/test_images/{name}",
        },
    )


def image_specs(bin_dir: Path = BIN) -> dict[str, ImageSpec]:
    return {name: image_spec(name, bin_dir) for name in IMAGES}


def build_images(bin_dir: Path = BIN) -> dict[str, Path]:
    """The OCI archives of the six test images (cached by input hash), by image short name."""
    return {name: build_archive(spec) for name, spec in image_specs(bin_dir).items()}


def import_images(archives: Mapping[str, Path], nodes: Iterable[NodeSpec] = NODES) -> list[str]:
    """Import each archive into every node's containerd (skipped where the digest is there already).

    Returns `<node>: <image>` for each import done. Needs root (the nodes' containerd sockets)."""
    imported = []
    for node in nodes:
        for name, archive in archives.items():
            if images.import_archive(archive, image_name(name), node.containerd_socket):
                imported.append(f"{node.name}: {image_name(name)}")
    return imported


# The command line ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SuiteOptions:
    """One run of the suite."""

    kubeconfig: Path = KUBECONFIG
    run: str | None = None  # a -test.run pattern below TestIngressConformance, e.g. "basics" or "dispatch/path$"
    skip: tuple[str, ...] = ()  # subtests to skip besides SKIPPED (--skip-tests)
    ingress_class: str = INGRESS_CLASS
    ingress_endpoint: str = INGRESS_ENDPOINT
    repository: str = IMAGE_REPOSITORY
    tag: str = TAG
    parallel: int = 6  # -test.parallel: the subtests mostly wait on the cluster, not on CPU
    timeout: float = 1800.0  # seconds for the whole run; the binary gets 60 s less to report what hung
    system_namespace: str = SYSTEM_NAMESPACE
    extra_flags: tuple[str, ...] = ()


def skip_list(options: SuiteOptions, skipped: Mapping[str, str] = SKIPPED) -> list[str]:
    """The subtests passed to --skip-tests: SKIPPED's and the run's own, sorted, without duplicates."""
    unknown = sorted(set(options.skip) - set(KNOWN_TESTS))
    if unknown:
        raise ValueError(f"unknown subtest(s) to skip: {', '.join(unknown)}; the suite's: {', '.join(KNOWN_TESTS)}")
    return sorted(set(skipped) | set(options.skip))


def run_pattern(run: str | None) -> str:
    """The -test.run pattern. Go splits it at each `/` into one pattern per level, and subtest names hold
    slashes themselves: `basics` selects basics and basics/http2, `basics$/^$` only basics."""
    return f"^{TEST}$" if not run else f"^{TEST}$/{run}"


def suite_command(options: SuiteOptions, binary: Path | None = None,
                  base_env: Mapping[str, str] | None = None,
                  skipped: Mapping[str, str] = SKIPPED) -> tuple[list[str], dict[str, str]]:
    """The argv and environment of a run of the suite binary."""
    binary = binary if binary is not None else BIN / SUITE_BINARY
    go_timeout = max(int(options.timeout) - 60, 30)
    argv = [
        str(binary),
        "-test.v",
        "-test.run", run_pattern(options.run),
        "-test.timeout", f"{go_timeout}s",
        "-test.parallel", str(options.parallel),
        f"--kubeconfig={options.kubeconfig}",
        f"--ingressClass={options.ingress_class}",
        f"--ingressendpoint={options.ingress_endpoint}",
        f"--dockerrepo={options.repository}",
        f"--tag={options.tag}",
        f"--cluster-suffix={CLUSTER_SUFFIX}",
        f"--service-domain={SERVICE_DOMAIN}",
    ]
    skips = skip_list(options, skipped)
    if skips:
        argv.append(f"--skip-tests={','.join(skips)}")
    argv.extend(options.extra_flags)
    env = {key: value for key, value in (os.environ if base_env is None else base_env).items()
           if key not in UPSTREAM_ENV and key != "KUBECONFIG"}
    env["SYSTEM_NAMESPACE"] = options.system_namespace
    env["KO_DOCKER_REPO"] = options.repository  # --dockerrepo's default; set for anything reading it
    return argv, env


# The output --------------------------------------------------------------------------------------

_HEADER = re.compile(r"^=== (RUN|PAUSE|CONT|NAME)\s*(\S*)\s*$")
_RESULT = re.compile(r"^(?P<indent>\s*)--- (?P<status>PASS|FAIL|SKIP): (?P<name>\S+) \((?P<seconds>[\d.]+)s\)\s*$")
_LOG_ENTRY = re.compile(r"^\s+(?P<where>[\w.-]+\.go:\d+): (?P<message>.*)$")
_TIMEOUT = re.compile(r"^panic: test timed out after (\S+)")
# client-go's warning, once a second per subtest waiting for a Service's endpoints (kept in the log file)
_NOISE = re.compile(r"warnings\.go:\d+\] \"Warning: v1 Endpoints is deprecated")
_WHERE = re.compile(r"^[\w.-]+\.go:\d+: ")


@dataclass
class TestResult:
    """One test or subtest of the output."""

    __test__ = False  # not a pytest test class, despite its name

    name: str  # as Go prints it: TestIngressConformance/basics/http2
    status: str = "unfinished"  # pass | fail | skip | unfinished (started, never reported: timeout, crash)
    seconds: float | None = None
    depth: int | None = None  # 0: TestIngressConformance, 1: a subtest of run.go, 2: one of its own subtests
    log: list[str] = field(default_factory=list)  # the test's log entries, continuation lines joined

    @property
    def subtest(self) -> str:
        """The name below TestIngressConformance (the name run.go gives), '' for the test itself."""
        return self.name.partition("/")[2]

    def reason(self, where: bool = True) -> str:
        """One line saying why: a skip's message, a failure's last log entry (t.Fatal's, usually), with
        the `file.go:NN: ` it came from unless `where` is false."""
        if not self.log:
            return ""
        line = " ".join(part.strip() for part in self.log[-1].splitlines())
        return line if where else _WHERE.sub("", line, count=1)


@dataclass
class SuiteOutput:
    tests: dict[str, TestResult]  # in order of first appearance
    timed_out: str | None = None  # the Go timeout, when the binary panicked with `test timed out`
    panic: str | None = None  # the first line of any other panic
    final: str | None = None  # PASS / FAIL / ok ... as printed last


def _entry_text(line: str) -> tuple[bool, str]:
    match = _LOG_ENTRY.match(line)
    if match:
        return True, f"{match['where']}: {match['message']}"
    return False, line.strip()


def parse_output(text: str) -> SuiteOutput:
    """Parse `go test -v` output (streamed logs under `=== RUN/CONT/NAME` headers, `--- STATUS` lines
    indented 4 spaces per level) into one TestResult per test and subtest."""
    tests: dict[str, TestResult] = {}
    out = SuiteOutput(tests)
    current: str | None = None
    in_panic = False

    def test(name: str) -> TestResult:
        if name not in tests:
            tests[name] = TestResult(name)
        return tests[name]

    for raw in text.splitlines():
        line = raw.lstrip("\x16")  # -test.v=test2json frames its markers with ^V
        if in_panic:
            if line.startswith("\t\t") and out.timed_out is not None:  # `running tests:` list
                name = line.strip().rsplit(" (", 1)[0]
                test(name).log.append(f"still running when the binary timed out after {out.timed_out}")
            continue
        if match := _HEADER.match(line):
            current = match[2] or None
            if current is not None:
                test(current)
            continue
        if match := _RESULT.match(line):
            result = test(match["name"])
            result.status = match["status"].lower()
            result.seconds = float(match["seconds"])
            result.depth = len(match["indent"].expandtabs(4)) // 4
            current = match["name"]
            continue
        if match := _TIMEOUT.match(line):
            out.timed_out, in_panic = match[1], True
            continue
        if line.startswith("panic: "):
            out.panic, in_panic = line, True
            if current is not None:
                test(current).log.append(line)
            continue
        if line and not line[0].isspace():
            if line in ("PASS", "FAIL") or line.startswith(("ok ", "FAIL\t", "ok\t")):
                out.final = line
            continue
        if current is None or not line.strip():
            continue
        new_entry, text_ = _entry_text(line)
        log = test(current).log
        if new_entry or not log:
            log.append(text_)
        else:
            log[-1] += "\n" + text_
    for result in tests.values():  # never reported: placed by the suite's known names
        if result.depth is None:
            result.depth = 0 if "/" not in result.name else 1 + _nested_depth(result.subtest)
    return out


def _nested_depth(subtest: str) -> int:
    """How many levels below a run.go subtest `subtest` is, by the suite's known names (0 when it is one)."""
    top = top_level(subtest)
    return 0 if top == subtest else subtest[len(top) + 1:].count("/") + 1


def top_level(subtest: str) -> str:
    """The run.go subtest a (nested) subtest belongs to: `visibility/fqdn` -> `visibility`, while
    `visibility/split` is one of run.go's own."""
    if subtest in KNOWN_TESTS:
        return subtest
    owners = [known for known in KNOWN_TESTS if subtest.startswith(known + "/")]
    return max(owners, key=len) if owners else subtest.split("/", 1)[0]


# The verdict -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """A line of the result table: one of run.go's subtests."""

    subtest: str
    status: str  # pass | fail | skip | unfinished
    seconds: float | None
    detail: str  # the skip reason, or the failing nested subtests and the failure's last log entry


def result_table(output: SuiteOutput, skipped: Mapping[str, str] = SKIPPED,
                 skip: Iterable[str] = ()) -> list[Row]:
    """One row per run.go subtest in the output, in run.go's order (nested subtests folded into their
    parent's detail)."""
    own_skips = set(skip)
    rows = []
    tests = output.tests
    order = {name: index for index, name in enumerate(KNOWN_TESTS)}
    for result in sorted(tests.values(), key=lambda t: (order.get(t.subtest, len(order)), t.subtest)):
        if result.depth != 1:
            continue
        detail = ""
        if result.status == "skip":
            detail = result.reason(where=False)
            if detail == SUITE_SKIP_MESSAGE:
                if result.subtest in skipped:
                    detail = f"SKIPPED: {skipped[result.subtest]}"
                elif result.subtest in own_skips:
                    detail = "--skip"
        elif result.status in ("fail", "unfinished"):
            nested = [t for t in tests.values()
                      if t.name.startswith(result.name + "/") and t.depth is not None and t.depth > 1
                      and t.status in ("fail", "unfinished")]
            parts = [f"{t.subtest[len(result.subtest) + 1:]}: {t.reason() or t.status}" for t in nested]
            if result.status == "unfinished":
                why = f"the binary timed out after {output.timed_out}" if output.timed_out else "the binary stopped"
                parts.insert(0, f"no result ({why})")
            elif not nested and result.reason():
                parts.append(result.reason())
            detail = "; ".join(parts)
        rows.append(Row(result.subtest, result.status, result.seconds, detail))
    return rows


@dataclass(frozen=True)
class Summary:
    passed: int
    failed: int
    skipped: int
    unfinished: int
    wall_seconds: float

    def line(self) -> str:
        return (f"{self.passed} passed, {self.failed} failed, {self.skipped} skipped"
                + (f", {self.unfinished} unfinished" if self.unfinished else "")
                + f" in {self.wall_seconds:.0f} s")


def summarize(rows: Sequence[Row], wall_seconds: float) -> Summary:
    count = {status: sum(1 for row in rows if row.status == status) for status in ("pass", "fail", "skip", "unfinished")}
    return Summary(count["pass"], count["fail"], count["skip"], count["unfinished"], wall_seconds)


def format_table(rows: Sequence[Row]) -> str:
    width = max([len(row.subtest) for row in rows] + [len("subtest")])
    lines = [f"{'subtest':<{width}}  {'result':<10}  {'time':>7}  detail"]
    for row in rows:
        seconds = f"{row.seconds:.1f}s" if row.seconds is not None else "-"
        status = {"pass": "PASS", "fail": "FAIL", "skip": "SKIP", "unfinished": "UNFINISHED"}[row.status]
        detail = row.detail.replace("\n", " ")
        lines.append(f"{row.subtest:<{width}}  {status:<10}  {seconds:>7}  {detail[:200]}".rstrip())
    return "\n".join(lines)


def problems(rows: Sequence[Row], output: SuiteOutput, required: Iterable[str] = (),
             returncode: int | None = 0) -> list[str]:
    """Everything wrong with a run: failed or unfinished subtests, required ones not passed, a binary that
    failed without any failing subtest to show for it. Empty when the run is good."""
    found = [f"{row.subtest}: {row.status.upper()} {row.detail}".rstrip() for row in rows
             if row.status in ("fail", "unfinished")]
    by_name = {row.subtest: row for row in rows}
    for name in required:
        row = by_name.get(name)
        if row is None:
            found.append(f"{name}: required, but it did not run")
        elif row.status == "skip":
            found.append(f"{name}: required, but it was skipped ({row.detail})")
    if output.timed_out and not any(row.status == "unfinished" for row in rows):
        found.append(f"the suite binary timed out after {output.timed_out}")
    if output.panic:
        found.append(f"the suite binary panicked: {output.panic}")
    if returncode not in (0, None) and not found:
        found.append(f"the suite binary exited {returncode} without a failing subtest (see its output)")
    if not rows and not found:
        found.append("no subtest ran (check --run)")
    return found


# Running it --------------------------------------------------------------------------------------


def kubectl(kubeconfig: Path, *args: str, timeout: float = 30.0,
            check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(KUBECTL), f"--kubeconfig={kubeconfig}", *args], capture_output=True, text=True,
                          timeout=timeout, check=check)


def preflight(kubeconfig: Path = KUBECONFIG, bin_dir: Path = BIN) -> None:
    """Raise SetupMissing, saying what to run, when the binaries, the cluster or its KIngress CRD are missing."""
    missing = [name for name in (SUITE_BINARY, *IMAGES) if not (bin_dir / name).exists()]
    if missing:
        raise SetupMissing(f"{bin_dir} lacks {', '.join(missing)}; run `bash hack/build-conformance.sh`")
    if not KUBECTL.exists():
        raise SetupMissing(f"{KUBECTL} is missing; run `make tools`")
    if not kubeconfig.exists():
        raise SetupMissing(f"no cluster: {kubeconfig} is missing; start one with `sudo make cluster`")
    try:
        nodes = kubectl(kubeconfig, "get", "nodes", "-o", "name", timeout=20)
    except subprocess.TimeoutExpired:
        raise SetupMissing(f"no cluster answers at {kubeconfig} (timed out); start one with `sudo make cluster`")
    if nodes.returncode != 0:
        raise SetupMissing(f"no cluster answers at {kubeconfig}: {nodes.stderr.strip()[-300:]}; "
                           "start one with `sudo make cluster`")
    crd = kubectl(kubeconfig, "get", "crd", KINGRESS_CRD, "-o", "name")
    if crd.returncode != 0:
        raise SetupMissing(f"the cluster has no KIngress CRD ({KINGRESS_CRD}): Knative's networking CRDs and "
                           f"the networking layer for {INGRESS_CLASS} are not installed")


def ensure_namespace(kubeconfig: Path = KUBECONFIG, namespace: str = NAMESPACE, timeout: float = 60.0) -> None:
    """The suite's namespace, created when missing, with its default ServiceAccount (the pods use it)."""
    if kubectl(kubeconfig, "get", "namespace", namespace).returncode != 0:
        kubectl(kubeconfig, "create", "namespace", namespace, check=True)
    wait_until(f"the default ServiceAccount of namespace {namespace}",
               lambda: kubectl(kubeconfig, "get", "serviceaccount", "default", "-n", namespace).returncode == 0,
               timeout, interval=0.5)


@dataclass
class SuiteRun:
    argv: list[str]
    returncode: int | None  # None: killed at the timeout
    wall_seconds: float
    output: SuiteOutput
    rows: list[Row]
    log_file: Path

    def summary(self) -> Summary:
        return summarize(self.rows, self.wall_seconds)


def run_suite(options: SuiteOptions, log_file: Path | None = None,
              echo: Callable[[str], None] | None = None, binary: Path | None = None) -> SuiteRun:
    """Run the suite binary with a timeout, its output written to `log_file` (and each line to `echo`)."""
    argv, env = suite_command(options, binary)
    if log_file is None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        log_file = LOG_DIR / f"ingress-{time.strftime('%Y%m%d-%H%M%S')}.log"
    started = time.monotonic()
    lines: list[str] = []
    returncode: int | None
    with open(log_file, "w") as log:
        log.write(" ".join(argv) + "\n")
        process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   errors="replace", start_new_session=True, cwd=ROOT)
        assert process.stdout is not None
        deadline = started + options.timeout
        try:
            for line in _lines_until(process, deadline):
                lines.append(line)
                log.write(line)
                log.flush()
                if echo is not None and not _NOISE.search(line):
                    echo(line.rstrip("\n"))
            returncode = process.wait(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            returncode = None
        finally:
            if process.poll() is None:  # timed out waiting, or interrupted: leave nothing running
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                returncode = None
        if returncode is None:
            log.write(f"\n(killed after {options.timeout:.0f} s)\n")
    output = parse_output("".join(lines))
    rows = result_table(output, SKIPPED, options.skip)
    return SuiteRun(argv, returncode, time.monotonic() - started, output, rows, log_file)


def _lines_until(process: subprocess.Popen[str], deadline: float) -> Iterable[str]:
    """The process's output lines; raises TimeoutExpired at the deadline (a watchdog kills its group)."""
    expired = threading.Event()

    def watchdog() -> None:
        while process.poll() is None:
            if time.monotonic() > deadline:
                expired.set()
                os.killpg(process.pid, signal.SIGKILL)
                return
            time.sleep(0.5)

    threading.Thread(target=watchdog, daemon=True).start()
    assert process.stdout is not None
    yield from process.stdout
    if expired.is_set():
        raise subprocess.TimeoutExpired(process.args, deadline)


def run_conformance(options: SuiteOptions, required: Iterable[str] = (),
                    echo: Callable[[str], None] | None = None,
                    log: Callable[[str], None] = lambda _: None) -> SuiteRun:
    """Everything: preflight, images built and imported into the nodes, the namespace, the run; raises
    SetupMissing before running, ConformanceFailure (naming the subtests) after a bad run."""
    preflight(options.kubeconfig)
    started = time.monotonic()
    archives = build_images()
    imported = import_images(archives)
    log(f"test images ready in {time.monotonic() - started:.1f} s"
        + (f" (imported: {', '.join(imported)})" if imported else " (all present in both nodes)"))
    ensure_namespace(options.kubeconfig)
    run = run_suite(options, echo=echo)
    found = problems(run.rows, run.output, required, run.returncode)
    if found:
        raise ConformanceFailure(
            f"Knative ingress conformance ({options.ingress_class}): {run.summary().line()}\n"
            + format_table(run.rows) + "\nproblems:\n  " + "\n  ".join(found) + f"\nfull output: {run.log_file}")
    return run

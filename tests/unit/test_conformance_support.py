"""support.cluster.conformance without a cluster: the suite's command line and environment, the parser of
its `go test -v` output (fed real output of bin/conformance/ingress.test), the verdict, the test images,
and the runner's timeout (with a stand-in binary).

The outputs below are real:
- BASICS_OUTPUT, ALL_OUTPUT: `bin/conformance/ingress.test -test.v --kubeconfig /nonexistent ...` (the
  suite fails fast in test.Setup without a cluster; ALL_OUTPUT with `--skip-tests tls,grpc/split`);
- NESTED_OUTPUT, TIMEOUT_OUTPUT: a stand-in Go test of the suite's shape (TestIngressConformance with
  parallel subtests named like run.go's, nested parallel subtests like visibility/fqdn and
  ingressclass/nil, pass/fail/skip, a multi-line t.Errorf), built with Go 1.26.8 and run with -test.v
  (TIMEOUT_OUTPUT with `-test.timeout 1ms`, cut after the `running tests:` list): the shapes a cluster
  run prints, which the fail-fast run cannot show;
- REAL_TIMEOUT_OUTPUT: ingress.test `-test.run '^TestIngressConformance$/basics$/^$' -test.timeout 40s`
  against a throwaway control plane without nodes (its pod never runs), cut after the `running tests:`
  list and all but two of client-go's once-a-second Endpoints warnings (klog lines, not test output).
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from support.cluster import conformance as c
from support.cluster.images import ImageSpec

BASICS_OUTPUT = """\
=== RUN   TestIngressConformance
=== RUN   TestIngressConformance/basics/http2
=== PAUSE TestIngressConformance/basics/http2
=== RUN   TestIngressConformance/basics
=== PAUSE TestIngressConformance/basics
=== CONT  TestIngressConformance/basics/http2
=== CONT  TestIngressConformance/basics
=== NAME  TestIngressConformance/basics/http2
    interface.go:57: Error initializing logstream error error loading client config: failed to create client config: stat /nonexistent: no such file or directory
    null.go:25: logstream was requested, but SYSTEM_NAMESPACE was unset.
=== NAME  TestIngressConformance/basics
    null.go:25: logstream was requested, but SYSTEM_NAMESPACE was unset.
    basic.go:32: couldn't get REST config: failed to create client config: stat /nonexistent: no such file or directory
=== NAME  TestIngressConformance/basics/http2
    basic.go:62: couldn't get REST config: failed to create client config: stat /nonexistent: no such file or directory
--- FAIL: TestIngressConformance (0.00s)
    --- FAIL: TestIngressConformance/basics (0.00s)
    --- FAIL: TestIngressConformance/basics/http2 (0.00s)
FAIL
"""

ALL_OUTPUT = """\
=== RUN   TestIngressConformance
=== RUN   TestIngressConformance/grpc
=== PAUSE TestIngressConformance/grpc
=== RUN   TestIngressConformance/hosts/multiple
=== PAUSE TestIngressConformance/hosts/multiple
=== RUN   TestIngressConformance/dispatch/percentage
=== PAUSE TestIngressConformance/dispatch/percentage
=== RUN   TestIngressConformance/retry
=== PAUSE TestIngressConformance/retry
=== RUN   TestIngressConformance/timeout
=== PAUSE TestIngressConformance/timeout
=== RUN   TestIngressConformance/visibility/path
=== PAUSE TestIngressConformance/visibility/path
=== RUN   TestIngressConformance/grpc/split
    run.go:105: Skipping the test in skip-test flag
=== RUN   TestIngressConformance/headers/post-split
=== PAUSE TestIngressConformance/headers/post-split
=== RUN   TestIngressConformance/dispatch/rule
=== PAUSE TestIngressConformance/dispatch/rule
=== RUN   TestIngressConformance/tls
    run.go:105: Skipping the test in skip-test flag
=== RUN   TestIngressConformance/visibility/split
=== PAUSE TestIngressConformance/visibility/split
=== RUN   TestIngressConformance/ingressclass
=== PAUSE TestIngressConformance/ingressclass
=== RUN   TestIngressConformance/websocket
=== PAUSE TestIngressConformance/websocket
=== RUN   TestIngressConformance/basics/http2
=== PAUSE TestIngressConformance/basics/http2
=== RUN   TestIngressConformance/headers/pre-split
=== PAUSE TestIngressConformance/headers/pre-split
=== RUN   TestIngressConformance/headers/probe
=== PAUSE TestIngressConformance/headers/probe
=== RUN   TestIngressConformance/visibility
=== PAUSE TestIngressConformance/visibility
=== RUN   TestIngressConformance/websocket/split
=== PAUSE TestIngressConformance/websocket/split
=== RUN   TestIngressConformance/basics
=== PAUSE TestIngressConformance/basics
=== RUN   TestIngressConformance/dispatch/path
=== PAUSE TestIngressConformance/dispatch/path
=== RUN   TestIngressConformance/dispatch/path_and_percentage
=== PAUSE TestIngressConformance/dispatch/path_and_percentage
=== RUN   TestIngressConformance/update
=== PAUSE TestIngressConformance/update
=== CONT  TestIngressConformance/grpc
    interface.go:57: Error initializing logstream error error loading client config: failed to create client config: stat /nonexistent: no such file or directory
    null.go:25: logstream was requested, but SYSTEM_NAMESPACE was unset.
    grpc.go:41: couldn't get REST config: failed to create client config: stat /nonexistent: no such file or directory
=== CONT  TestIngressConformance/update
    null.go:25: logstream was requested, but SYSTEM_NAMESPACE was unset.
    update.go:38: couldn't get REST config: failed to create client config: stat /nonexistent: no such file or directory
=== CONT  TestIngressConformance/dispatch/path
    null.go:25: logstream was requested, but SYSTEM_NAMESPACE was unset.
    path.go:36: couldn't get REST config: failed to create client config: stat /nonexistent: no such file or directory
=== CONT  TestIngressConformance/dispatch/path_and_percentage
    null.go:25: logstream was requested, but SYSTEM_NAMESPACE was unset.
    path.go:148: couldn't get REST config: failed to create client config: stat /nonexistent: no such file or directory
=== CONT  TestIngressConformance/ingressclass
    null.go:25: logstream was requested, but SYSTEM_NAMESPACE was unset.
=== CONT  TestIngressConformance/visibility/split
    null.go:25: logstream was requested, but SYSTEM_NAMESPACE was unset.
    visibility.go:113: couldn't get REST config: failed to create client config: stat /nonexistent: no such file or directory
=== CONT  TestIngressConformance/dispatch/rule
    null.go:25: logstream was requested, but SYSTEM_NAMESPACE was unset.
=== NAME  TestIngressConformance/ingressclass
    class.go:36: couldn't get REST config: failed to create client config: stat /nonexistent: no such file or directory
=== NAME  TestIngressConformance/dispatch/rule
    rule.go:32: couldn't get REST config: failed to create client config: stat /nonexistent: no such file or directory
=== CONT  TestIngressConformance/headers/post-split
=== CONT  TestIngressConformance/visibility/path
=== NAME  TestIngressConformance/headers/post-split
    null.go:25: logstream was requested, but SYSTEM_NAMESPACE was unset.
    headers.go:278: couldn't get REST config: failed to create client config: stat /nonexistent: no such file or directory
=== CONT  TestIngressConformance/timeout
    null.go:25: logstream was requested, but SYSTEM_NAMESPACE was unset.
=== NAME  TestIngressConformance/visibility/path
    null.go:25: logstream was requested, but SYSTEM_NAMESPACE was unset.
=== NAME  TestIngressConformance/timeout
    timeout.go:34: couldn't get REST config: failed to create client config: stat /nonexistent: no such file or directory
=== CONT  TestIngressConformance/retry
=== NAME  TestIngressConformance/visibility/path
    visibility.go:241: couldn't get REST config: failed to create client config: stat /nonexistent: no such file or directory
=== NAME  TestIngressConformance/retry
    null.go:25: logstream was requested, but SYSTEM_NAMESPACE was unset.
=== CONT  TestIngressConformance/dispatch/percentage
=== NAME  TestIngressConformance/retry
    retry.go:32: couldn't get REST config: failed to create client config: stat /nonexistent: no such file or directory
=== CONT  TestIngressConformance/hosts/multiple
    null.go:25: logstream was requested, but SYSTEM_NAMESPACE was unset.
=== NAME  TestIngressConformance/dispatch/percentage
    null.go:25: logstream was requested, but SYSTEM_NAMESPACE was unset.
=== NAME  TestIngressConformance/hosts/multiple
    hosts.go:32: couldn't get REST config: failed to create client config: stat /nonexistent: no such file or directory
=== CONT  TestIngressConformance/headers/probe
=== NAME  TestIngressConformance/dispatch/percentage
    percentage.go:36: couldn't get REST config: failed to create client config: stat /nonexistent: no such file or directory
=== NAME  TestIngressConformance/headers/probe
    null.go:25: logstream was requested, but SYSTEM_NAMESPACE was unset.
    headers.go:40: couldn't get REST config: failed to create client config: stat /nonexistent: no such file or directory
=== CONT  TestIngressConformance/basics
=== CONT  TestIngressConformance/websocket/split
=== NAME  TestIngressConformance/basics
    null.go:25: logstream was requested, but SYSTEM_NAMESPACE was unset.
=== NAME  TestIngressConformance/websocket/split
    null.go:25: logstream was requested, but SYSTEM_NAMESPACE was unset.
    websocket.go:88: couldn't get REST config: failed to create client config: stat /nonexistent: no such file or directory
=== NAME  TestIngressConformance/basics
    basic.go:32: couldn't get REST config: failed to create client config: stat /nonexistent: no such file or directory
=== CONT  TestIngressConformance/visibility
    null.go:25: logstream was requested, but SYSTEM_NAMESPACE was unset.
=== CONT  TestIngressConformance/basics/http2
=== NAME  TestIngressConformance/visibility
    visibility.go:37: couldn't get REST config: failed to create client config: stat /nonexistent: no such file or directory
=== NAME  TestIngressConformance/basics/http2
    null.go:25: logstream was requested, but SYSTEM_NAMESPACE was unset.
    basic.go:62: couldn't get REST config: failed to create client config: stat /nonexistent: no such file or directory
=== CONT  TestIngressConformance/websocket
    null.go:25: logstream was requested, but SYSTEM_NAMESPACE was unset.
    websocket.go:40: couldn't get REST config: failed to create client config: stat /nonexistent: no such file or directory
=== CONT  TestIngressConformance/headers/pre-split
    null.go:25: logstream was requested, but SYSTEM_NAMESPACE was unset.
    headers.go:216: couldn't get REST config: failed to create client config: stat /nonexistent: no such file or directory
--- FAIL: TestIngressConformance (0.00s)
    --- SKIP: TestIngressConformance/grpc/split (0.00s)
    --- SKIP: TestIngressConformance/tls (0.00s)
    --- FAIL: TestIngressConformance/grpc (0.00s)
    --- FAIL: TestIngressConformance/update (0.00s)
    --- FAIL: TestIngressConformance/dispatch/path (0.00s)
    --- FAIL: TestIngressConformance/dispatch/path_and_percentage (0.00s)
    --- FAIL: TestIngressConformance/visibility/split (0.00s)
    --- FAIL: TestIngressConformance/dispatch/rule (0.00s)
    --- FAIL: TestIngressConformance/ingressclass (0.00s)
    --- FAIL: TestIngressConformance/headers/post-split (0.00s)
    --- FAIL: TestIngressConformance/timeout (0.00s)
    --- FAIL: TestIngressConformance/visibility/path (0.00s)
    --- FAIL: TestIngressConformance/retry (0.00s)
    --- FAIL: TestIngressConformance/hosts/multiple (0.00s)
    --- FAIL: TestIngressConformance/dispatch/percentage (0.00s)
    --- FAIL: TestIngressConformance/headers/probe (0.00s)
    --- FAIL: TestIngressConformance/websocket/split (0.00s)
    --- FAIL: TestIngressConformance/basics (0.00s)
    --- FAIL: TestIngressConformance/visibility (0.00s)
    --- FAIL: TestIngressConformance/basics/http2 (0.00s)
    --- FAIL: TestIngressConformance/websocket (0.00s)
    --- FAIL: TestIngressConformance/headers/pre-split (0.00s)
FAIL
"""

NESTED_OUTPUT = """\
=== RUN   TestIngressConformance
=== RUN   TestIngressConformance/visibility
=== PAUSE TestIngressConformance/visibility
=== RUN   TestIngressConformance/visibility/split
=== PAUSE TestIngressConformance/visibility/split
=== RUN   TestIngressConformance/tls
    shape_test.go:30: Skipping the test in skip-test flag
=== RUN   TestIngressConformance/basics/http2
=== PAUSE TestIngressConformance/basics/http2
=== RUN   TestIngressConformance/basics
=== PAUSE TestIngressConformance/basics
=== RUN   TestIngressConformance/ingressclass
=== PAUSE TestIngressConformance/ingressclass
=== CONT  TestIngressConformance/visibility
=== RUN   TestIngressConformance/visibility/fqdn
=== PAUSE TestIngressConformance/visibility/fqdn
=== RUN   TestIngressConformance/visibility/short
=== PAUSE TestIngressConformance/visibility/short
=== RUN   TestIngressConformance/visibility/shortest
=== PAUSE TestIngressConformance/visibility/shortest
=== CONT  TestIngressConformance/visibility/fqdn
=== CONT  TestIngressConformance/ingressclass
=== RUN   TestIngressConformance/ingressclass/nil
=== PAUSE TestIngressConformance/ingressclass/nil
=== RUN   TestIngressConformance/ingressclass/incorrect
=== PAUSE TestIngressConformance/ingressclass/incorrect
=== CONT  TestIngressConformance/ingressclass/nil
    shape_test.go:46: no update within 30s for nil
=== CONT  TestIngressConformance/basics
    shape_test.go:39: ingressendpoint: "172.31.255.10"
=== CONT  TestIngressConformance/basics/http2
    shape_test.go:35: Unexpected response:
          got: HTTP/1.1
         want: HTTP/2.0
=== CONT  TestIngressConformance/visibility/split
    shape_test.go:27: [visibility-split] Using port 61
=== CONT  TestIngressConformance/visibility/shortest
=== NAME  TestIngressConformance/visibility/fqdn
    shape_test.go:21: proxied fqdn
=== CONT  TestIngressConformance/visibility/short
=== NAME  TestIngressConformance/visibility/shortest
    shape_test.go:21: proxied shortest
=== CONT  TestIngressConformance/ingressclass/incorrect
    shape_test.go:46: no update within 30s for incorrect
=== NAME  TestIngressConformance/visibility/short
    shape_test.go:19: Error making GET request: dial tcp 172.31.255.10:30080: connect: connection refused
--- FAIL: TestIngressConformance (0.00s)
    --- SKIP: TestIngressConformance/tls (0.00s)
    --- PASS: TestIngressConformance/basics (0.00s)
    --- FAIL: TestIngressConformance/basics/http2 (0.01s)
    --- PASS: TestIngressConformance/visibility/split (0.00s)
    --- PASS: TestIngressConformance/ingressclass (0.00s)
        --- SKIP: TestIngressConformance/ingressclass/nil (0.00s)
        --- SKIP: TestIngressConformance/ingressclass/incorrect (0.00s)
    --- FAIL: TestIngressConformance/visibility (0.00s)
        --- PASS: TestIngressConformance/visibility/fqdn (0.02s)
        --- PASS: TestIngressConformance/visibility/shortest (0.02s)
        --- FAIL: TestIngressConformance/visibility/short (0.02s)
FAIL
"""

REAL_TIMEOUT_OUTPUT = "".join(
    '=== RUN   TestIngressConformance\n'
    '=== RUN   TestIngressConformance/basics\n'
    '=== PAUSE TestIngressConformance/basics\n'
    '=== CONT  TestIngressConformance/basics\n'
    '    basic.go:34: [ingress-conformance-basics-bhvbzwjb] Using port 65\n'
    '    basic.go:34: [ingress-conformance-basics-bhvbzwjb] Using containerPort 8038\n'
    'I1129 16:07:49.547594   21546 warnings.go:107] "Warning: v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice"\n'
    'I1129 16:07:50.548733   21546 warnings.go:107] "Warning: v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice"\n'
    'panic: test timed out after 40s\n'
    '\trunning tests:\n'
    '\t\tTestIngressConformance/basics (40s)\n'
    '\n'
)

TIMEOUT_OUTPUT = "".join(
    '=== RUN   TestIngressConformance\n'
    '=== RUN   TestIngressConformance/visibility\n'
    '=== PAUSE TestIngressConformance/visibility\n'
    '=== RUN   TestIngressConformance/visibility/split\n'
    '=== PAUSE TestIngressConformance/visibility/split\n'
    '=== CONT  TestIngressConformance/visibility\n'
    '=== RUN   TestIngressConformance/visibility/fqdn\n'
    '=== PAUSE TestIngressConformance/visibility/fqdn\n'
    '=== RUN   TestIngressConformance/visibility/short\n'
    '=== PAUSE TestIngressConformance/visibility/short\n'
    '=== RUN   TestIngressConformance/visibility/shortest\n'
    '=== PAUSE TestIngressConformance/visibility/shortest\n'
    '=== CONT  TestIngressConformance/visibility/fqdn\n'
    '=== CONT  TestIngressConformance/visibility/split\n'
    '    shape_test.go:27: [visibility-split] Using port 61\n'
    '=== CONT  TestIngressConformance/visibility/shortest\n'
    'panic: test timed out after 1ms\n'
    '\trunning tests:\n'
    '\t\tTestIngressConformance/visibility/fqdn (0s)\n'
    '\t\tTestIngressConformance/visibility/shortest (0s)\n'
    '\n'
)

ROOT = Path(__file__).resolve().parents[2]


def flag_values(argv: list[str], name: str) -> list[str]:
    """The values of `--name=value` and `-name value` flags in argv."""
    values = [arg.split("=", 1)[1] for arg in argv if arg.startswith(f"{name}=")]
    values += [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == name]
    return values


# The command line and environment ---------------------------------------------------------------


@pytest.mark.parametrize(("options", "skipped", "expected"), [
    pytest.param(c.SuiteOptions(kubeconfig=Path("/k/config")), {}, {
        "-test.run": ["^TestIngressConformance$"], "--kubeconfig": ["/k/config"],
        "--ingressClass": ["aifn.ingress.networking.knative.dev"], "--ingressendpoint": ["172.31.255.10"],
        "--dockerrepo": ["localhost/aifn/knative-conformance"], "--tag": ["v1.23"], "--skip-tests": [],
        "-test.timeout": ["1740s"], "-test.parallel": ["6"], "--cluster-suffix": ["cluster.local"],
        "--service-domain": ["example.com"], "--enable-beta": [], "--enable-alpha": [],
    }, id="defaults"),
    pytest.param(c.SuiteOptions(run="basics$/^$", timeout=600, parallel=2), {}, {
        "-test.run": ["^TestIngressConformance$/basics$/^$"], "-test.timeout": ["540s"], "-test.parallel": ["2"],
    }, id="run-and-timeout"),
    pytest.param(c.SuiteOptions(skip=("tls", "grpc/split", "tls")), {"retry": "why"}, {
        "--skip-tests": ["grpc/split,retry,tls"],
    }, id="skips-merged-sorted-unique"),
    pytest.param(c.SuiteOptions(timeout=50, ingress_class="x.ingress.networking.knative.dev",
                                ingress_endpoint="10.0.0.1"), {}, {
        "-test.timeout": ["30s"], "--ingressClass": ["x.ingress.networking.knative.dev"],
        "--ingressendpoint": ["10.0.0.1"],
    }, id="short-timeout-has-a-floor"),
])
def test_suite_command_flags(options: c.SuiteOptions, skipped: dict[str, str], expected: dict[str, list[str]]) -> None:
    argv, _ = c.suite_command(options, binary=Path("/b/ingress.test"), base_env={}, skipped=skipped)
    assert argv[0] == "/b/ingress.test"
    assert "-test.v" in argv
    for name, values in expected.items():
        assert flag_values(argv, name) == values, (name, argv)


def test_suite_command_defaults_to_the_built_binary() -> None:
    argv, _ = c.suite_command(c.SuiteOptions(), base_env={})
    assert argv[0] == str(ROOT / "bin" / "conformance" / "ingress.test")


@pytest.mark.parametrize(("base", "present", "absent"), [
    ({"PATH": "/usr/bin", "HOME": "/root"}, {"PATH": "/usr/bin", "HOME": "/root"}, ()),
    ({"KUBECONFIG": "/other", "UPSTREAM_TLS_CERT": "server-certs", "UPSTREAM_CA_CERT": "ca", "SERVER_NAME": "x"},
     {}, ("KUBECONFIG", "UPSTREAM_TLS_CERT", "UPSTREAM_CA_CERT", "SERVER_NAME")),
    ({"SYSTEM_NAMESPACE": "elsewhere", "KO_DOCKER_REPO": "gcr.io/x"},
     {"SYSTEM_NAMESPACE": "knative-serving", "KO_DOCKER_REPO": "localhost/aifn/knative-conformance"}, ()),
])
def test_suite_environment(base: dict[str, str], present: dict[str, str], absent: tuple[str, ...]) -> None:
    _, env = c.suite_command(c.SuiteOptions(), base_env=base)
    assert env["SYSTEM_NAMESPACE"] == "knative-serving"
    for key, value in present.items():
        assert env[key] == value
    for key in absent:
        assert key not in env


@pytest.mark.parametrize("skip", [("tls", "nope"), ("basics/",), ("Basics",)])
def test_unknown_skips_are_refused(skip: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="unknown subtest"):
        c.suite_command(c.SuiteOptions(skip=skip), base_env={})


def test_project_skips_never_cover_a_required_subtest() -> None:
    assert set(c.REQUIRED) <= set(c.STABLE_TESTS)
    assert set(c.SKIPPED) <= set(c.STABLE_TESTS)
    assert not set(c.SKIPPED) & set(c.REQUIRED)
    assert len(set(c.STABLE_TESTS)) == len(c.STABLE_TESTS) == 22


def test_tools_module_pins_the_networking_serving_requires() -> None:
    ours = (ROOT / "hack/tools/knative-conformance/go.mod").read_text()
    serving = (ROOT / "hack/tools/knative-serving/go.mod").read_text()
    pin = f"knative.dev/networking {c.NETWORKING_VERSION}"
    assert f"require {pin}\n" in ours
    assert pin in serving
    tools = (ROOT / "hack/tools/knative-conformance/tools.go").read_text()
    for name in c.IMAGES:
        assert f'"knative.dev/networking/test/test_images/{name}"' in tools
    assert '"knative.dev/networking/test/conformance/ingress"' in tools


# Images ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", c.IMAGES)
def test_image_names_follow_the_suite_template(name: str) -> None:
    argv, _ = c.suite_command(c.SuiteOptions(), base_env={})
    repository, tag = flag_values(argv, "--dockerrepo")[0], flag_values(argv, "--tag")[0]
    # knative.dev/pkg/test ImagePath: the default --imagetemplate {{.Repository}}/{{.Name}}:{{.Tag}}
    assert c.image_name(name) == f"{repository}/{name}:{tag}"
    assert flag_values(argv, "--imagetemplate") == []


def test_unknown_image_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown conformance test image"):
        c.image_name("helloworld")


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    """bin/conformance/ as build-conformance.sh leaves it: links into a cache directory."""
    cache, bin_dir = tmp_path / "cache", tmp_path / "bin"
    cache.mkdir()
    bin_dir.mkdir()
    for name in c.IMAGES:
        (cache / name).write_bytes(b"\x7fELF" + name.encode())
        (cache / name).chmod(0o700)
        (bin_dir / name).symlink_to(cache / name)
    return bin_dir


@pytest.mark.parametrize("name", c.IMAGES)
def test_image_spec(name: str, fake_bin: Path, tmp_path: Path) -> None:
    spec = c.image_spec(name, fake_bin)
    assert isinstance(spec, ImageSpec)
    assert spec.name == f"localhost/aifn/knative-conformance/{name}:v1.23"
    assert spec.entrypoint == (f"/ko-app/{name}",)
    assert spec.user == "65532:65532"
    (item,) = spec.files
    assert item.source == (fake_bin / name).resolve() != fake_bin / name
    assert (item.target, item.mode) == (f"/ko-app/{name}", 0o755)
    archive = c.build_archive(spec, cache=tmp_path / "images")
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))
        manifest = json.load(tar.extractfile("blobs/sha256/" + index["manifests"][0]["digest"].split(":")[1]))
        layer = tar.extractfile("blobs/sha256/" + manifest["layers"][0]["digest"].split(":")[1])
        with tarfile.open(fileobj=layer) as files:
            member = files.getmember(f"ko-app/{name}")
            assert member.mode == 0o755 and member.isfile()
            assert files.extractfile(member).read() == b"\x7fELF" + name.encode()
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == spec.name


def test_image_spec_says_what_to_build(tmp_path: Path) -> None:
    with pytest.raises(c.SetupMissing, match=r"bash hack/build-conformance\.sh"):
        c.image_spec("runtime", tmp_path)


def test_images_go_to_every_node(fake_bin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []

    def fake_import(archive: Path, name: str, socket: Path) -> bool:
        calls.append((name, str(socket)))
        return "runtime" in name  # the others: already there

    monkeypatch.setattr(c.images, "import_archive", fake_import)
    archives = {name: tmp_path / f"{name}.tar" for name in c.IMAGES}
    imported = c.import_images(archives)
    assert len(calls) == len(c.IMAGES) * len(c.NODES)
    for node in c.NODES:
        assert {name for name, socket in calls if socket == str(node.containerd_socket)} == {
            c.image_name(name) for name in c.IMAGES}
    assert imported == [f"{node.name}: localhost/aifn/knative-conformance/runtime:v1.23" for node in c.NODES]


# The output --------------------------------------------------------------------------------------


def test_all_stable_subtests_in_a_real_run() -> None:
    output = c.parse_output(ALL_OUTPUT)
    top = {t.subtest: t for t in output.tests.values() if t.depth == 1}
    assert set(top) == set(c.STABLE_TESTS)
    assert output.tests["TestIngressConformance"].depth == 0
    assert output.tests["TestIngressConformance"].status == "fail"
    assert output.final == "FAIL"
    assert {name for name, t in top.items() if t.status == "skip"} == {"tls", "grpc/split"}
    for name, t in top.items():
        if t.status == "fail":
            assert "couldn't get REST config" in t.reason(), name
            assert t.seconds == 0.0


@pytest.mark.parametrize(("subtest", "where"), [
    ("basics", "basic.go:32: "),  # logged under `=== NAME  TestIngressConformance/basics`
    ("basics/http2", "basic.go:62: "),  # after another `=== NAME` switched back to it
])
def test_logs_follow_the_name_headers(subtest: str, where: str) -> None:
    test = c.parse_output(BASICS_OUTPUT).tests[f"TestIngressConformance/{subtest}"]
    assert test.status == "fail" and test.depth == 1
    assert test.reason().startswith(where)
    assert test.reason(where=False).startswith("couldn't get REST config")


@pytest.mark.parametrize(("name", "status", "depth"), [
    ("TestIngressConformance", "fail", 0),
    ("TestIngressConformance/tls", "skip", 1),
    ("TestIngressConformance/basics", "pass", 1),
    ("TestIngressConformance/basics/http2", "fail", 1),
    ("TestIngressConformance/visibility", "fail", 1),
    ("TestIngressConformance/visibility/split", "pass", 1),
    ("TestIngressConformance/visibility/fqdn", "pass", 2),
    ("TestIngressConformance/visibility/short", "fail", 2),
    ("TestIngressConformance/visibility/shortest", "pass", 2),
    ("TestIngressConformance/ingressclass", "pass", 1),
    ("TestIngressConformance/ingressclass/nil", "skip", 2),
    ("TestIngressConformance/ingressclass/incorrect", "skip", 2),
])
def test_nested_subtests(name: str, status: str, depth: int) -> None:
    test = c.parse_output(NESTED_OUTPUT).tests[name]
    assert (test.status, test.depth) == (status, depth)


@pytest.mark.parametrize(("subtest", "status", "detail"), [
    ("basics", "pass", ""),
    ("basics/http2", "fail", "shape_test.go:35: Unexpected response: got: HTTP/1.1 want: HTTP/2.0"),
    ("visibility", "fail", "short: shape_test.go:19: Error making GET request: dial tcp 172.31.255.10:30080: "
                           "connect: connection refused"),
    ("visibility/split", "pass", ""),
    ("ingressclass", "pass", ""),
    ("tls", "skip", "Skipping the test in skip-test flag"),
])
def test_result_table(subtest: str, status: str, detail: str) -> None:
    rows = {row.subtest: row for row in c.result_table(c.parse_output(NESTED_OUTPUT), skipped={})}
    assert set(rows) == {"basics", "basics/http2", "visibility", "visibility/split", "ingressclass", "tls"}
    assert (rows[subtest].status, rows[subtest].detail) == (status, detail)


def test_result_table_is_in_run_go_order() -> None:
    rows = c.result_table(c.parse_output(ALL_OUTPUT), skipped={})
    assert [row.subtest for row in rows] == list(c.STABLE_TESTS)


@pytest.mark.parametrize(("skipped", "skip", "detail"), [
    ({}, (), "Skipping the test in skip-test flag"),
    ({"tls": "no certificate provider yet"}, (), "SKIPPED: no certificate provider yet"),
    ({}, ("tls",), "--skip"),
])
def test_skip_reasons(skipped: dict[str, str], skip: tuple[str, ...], detail: str) -> None:
    rows = {row.subtest: row for row in c.result_table(c.parse_output(ALL_OUTPUT), skipped, skip)}
    assert (rows["tls"].status, rows["tls"].detail) == ("skip", detail)


def test_a_timed_out_run() -> None:
    output = c.parse_output(TIMEOUT_OUTPUT)
    assert output.timed_out == "1ms" and output.final is None
    tests = output.tests
    assert tests["TestIngressConformance/visibility/fqdn"].status == "unfinished"
    assert tests["TestIngressConformance/visibility/fqdn"].depth == 2
    assert "still running when the binary timed out after 1ms" in tests["TestIngressConformance/visibility/fqdn"].log
    rows = {row.subtest: row for row in c.result_table(output, skipped={})}
    assert {name: row.status for name, row in rows.items()} == {"visibility": "unfinished",
                                                               "visibility/split": "unfinished"}
    assert rows["visibility"].detail.startswith("no result (the binary timed out after 1ms); fqdn: still running")
    found = c.problems(list(rows.values()), output, (), None)
    assert any(p.startswith("visibility: UNFINISHED") for p in found)


def test_a_real_timed_out_run() -> None:
    output = c.parse_output(REAL_TIMEOUT_OUTPUT)
    assert output.timed_out == "40s"
    basics = output.tests["TestIngressConformance/basics"]
    assert (basics.status, basics.depth) == ("unfinished", 1)
    assert basics.log == ["basic.go:34: [ingress-conformance-basics-bhvbzwjb] Using port 65",
                          "basic.go:34: [ingress-conformance-basics-bhvbzwjb] Using containerPort 8038",
                          "still running when the binary timed out after 40s"]
    (row,) = c.result_table(output, skipped={})
    assert (row.subtest, row.status, row.detail) == ("basics", "unfinished",
                                                     "no result (the binary timed out after 40s)")
    assert c.problems([row], output, ("basics",), 2) == [
        "basics: UNFINISHED no result (the binary timed out after 40s)"]


@pytest.mark.parametrize(("subtest", "top"), [
    ("visibility/fqdn", "visibility"),
    ("visibility/split", "visibility/split"),
    ("visibility/split/a", "visibility/split"),
    ("ingressclass/nil", "ingressclass"),
    ("basics/http2", "basics/http2"),
    ("dispatch/path", "dispatch/path"),
    ("something/new", "something"),
])
def test_top_level(subtest: str, top: str) -> None:
    assert c.top_level(subtest) == top


# The verdict -------------------------------------------------------------------------------------


def rows_of(**statuses: str) -> list[c.Row]:
    return [c.Row(name.replace("__", "/"), status, 1.0, "why" if status == "skip" else "") for name, status in
            statuses.items()]


@pytest.mark.parametrize(("rows", "required", "returncode", "expected"), [
    (rows_of(basics="pass", basics__http2="pass"), ("basics", "basics/http2"), 0, []),
    (rows_of(basics="pass", tls="skip"), ("basics",), 0, []),
    (rows_of(basics="pass", tls="fail"), (), 1, ["tls: FAIL"]),
    (rows_of(basics="skip"), ("basics",), 0, ["basics: required, but it was skipped (why)"]),
    (rows_of(basics="pass"), ("basics", "grpc"), 0, ["grpc: required, but it did not run"]),
    (rows_of(basics="pass"), (), 1, ["the suite binary exited 1 without a failing subtest (see its output)"]),
    ([], (), 0, ["no subtest ran (check --run)"]),
])
def test_problems(rows: list[c.Row], required: tuple[str, ...], returncode: int, expected: list[str]) -> None:
    assert c.problems(rows, c.SuiteOutput({}), required, returncode) == expected


def test_summary_and_table() -> None:
    rows = c.result_table(c.parse_output(NESTED_OUTPUT), skipped={})
    assert c.summarize(rows, 12.3).line() == "3 passed, 2 failed, 1 skipped in 12 s"
    table = c.format_table(rows).splitlines()
    assert table[0].split() == ["subtest", "result", "time", "detail"]
    assert table[1].split()[:2] == ["basics", "PASS"]
    assert len(table) == len(rows) + 1


# The runner --------------------------------------------------------------------------------------


def stand_in(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "ingress.test"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {tmp_path / 'argv'}\n{body}\n")
    script.chmod(0o755)
    return script


def test_run_suite_parses_what_the_binary_prints(tmp_path: Path) -> None:
    (tmp_path / "out.txt").write_text(BASICS_OUTPUT)
    binary = stand_in(tmp_path, f"cat {tmp_path / 'out.txt'}; exit 1")
    options = c.SuiteOptions(kubeconfig=Path("/nonexistent"), run="basics", timeout=60)
    run = c.run_suite(options, log_file=tmp_path / "log", binary=binary)
    assert run.returncode == 1
    assert [(row.subtest, row.status) for row in run.rows] == [("basics", "fail"), ("basics/http2", "fail")]
    assert (tmp_path / "argv").read_text().splitlines() == c.suite_command(options, binary)[0][1:]
    assert BASICS_OUTPUT in (tmp_path / "log").read_text()


def test_run_suite_kills_a_hung_binary(tmp_path: Path) -> None:
    binary = stand_in(tmp_path, "echo '=== RUN   TestIngressConformance'\n"
                                "echo '=== RUN   TestIngressConformance/basics'\nsleep 60 & wait")
    run = c.run_suite(c.SuiteOptions(timeout=2), log_file=tmp_path / "log", binary=binary)
    assert run.returncode is None
    assert 1.5 < run.wall_seconds < 10
    assert [(row.subtest, row.status) for row in run.rows] == [("basics", "unfinished")]
    assert "(killed after 2 s)" in (tmp_path / "log").read_text()


BINARY = ROOT / "bin" / "conformance" / "ingress.test"


@pytest.mark.skipif(not BINARY.exists(), reason="bin/conformance/ingress.test not built (bash hack/build-conformance.sh)")
@pytest.mark.parametrize(("run", "expected"), [
    (None, set(c.STABLE_TESTS)),
    ("basics", {"basics", "basics/http2"}),
    ("basics$/^$", {"basics"}),
    ("dispatch", {"dispatch/path", "dispatch/percentage", "dispatch/path_and_percentage", "dispatch/rule"}),
])
def test_the_built_suite_runs_these_subtests(run: str | None, expected: set[str], tmp_path: Path) -> None:
    """The real binary, without a cluster (every subtest fails in its setup at once)."""
    options = c.SuiteOptions(kubeconfig=tmp_path / "missing", run=run, timeout=60)
    started = c.time.monotonic()
    result = c.run_suite(options, log_file=tmp_path / "log")
    assert c.time.monotonic() - started < 30
    assert {row.subtest for row in result.rows} == expected
    assert {row.status for row in result.rows if row.subtest not in c.SKIPPED} == {"fail"}
    assert {row.status for row in result.rows if row.subtest in c.SKIPPED} <= {"skip"}
    assert result.returncode == 1


def test_run_suite_echoes_without_client_go_noise(tmp_path: Path) -> None:
    (tmp_path / "out.txt").write_text(REAL_TIMEOUT_OUTPUT)
    binary = stand_in(tmp_path, f"cat {tmp_path / 'out.txt'}; exit 2")
    echoed: list[str] = []
    run = c.run_suite(c.SuiteOptions(timeout=60), log_file=tmp_path / "log", echo=echoed.append, binary=binary)
    assert run.returncode == 2 and run.output.timed_out == "40s"
    assert [(row.subtest, row.status) for row in run.rows] == [("basics", "unfinished")]
    assert "panic: test timed out after 40s" in echoed
    assert not [line for line in echoed if "Endpoints is deprecated" in line]
    assert (tmp_path / "log").read_text().count("Endpoints is deprecated") == 2

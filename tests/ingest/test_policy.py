"""Tests for faceflow.ingest.policy: which sources a client may start over gRPC."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from faceflow.ingest.errors import IngestConfigError, SourceNotAllowed
from faceflow.ingest.policy import FILE_ROOTS_ENV, HOSTS_ENV, SCHEMES_ENV, SourcePolicy

HOSTS = "cam.example.com,*.cams.example.org,10.20.0.0/16,192.0.2.7,fd00::/8,[2001:db8::5]"
ALLOWED = "allowed"


@dataclass(frozen=True)
class Tree:
    """A root folder allowed by the policy, with files, links and a folder outside it."""

    root: Path
    outside: Path

    def fill(self, text: str) -> str:
        return text.format(root=self.root, outside=self.outside)


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    root = tmp_path / "media"
    outside = tmp_path / "private"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "clip.mp4").write_bytes(b"video")
    (root / "sub" / "deep.mp4").write_bytes(b"video")
    (outside / "secret.mp4").write_bytes(b"secret")
    (root / "link-out").symlink_to(outside / "secret.mp4")
    (root / "dir-out").symlink_to(outside)
    (root / "link-in").symlink_to(root / "sub" / "deep.mp4")
    (root / "etc-passwd").symlink_to("/etc/passwd")
    return Tree(root, outside)


def policy_for(tree: Tree, hosts: str = HOSTS, schemes: str = "rtsp,rtsps,http,https") -> SourcePolicy:
    return SourcePolicy.parse(schemes=schemes, hosts=hosts, file_roots=str(tree.root))


@pytest.mark.parametrize(
    ("uri", "expected", "message_part"),
    [
        # paths: lexical check first, then symbolic links resolved and checked again
        ("/etc/passwd", SourceNotAllowed, "outside the folders allowed"),
        ("{root}/clip.mp4", "{root}/clip.mp4", None),
        ("{root}", "{root}", None),
        ("{root}/", "{root}", None),
        ("{root}/sub/../clip.mp4", "{root}/clip.mp4", None),
        ("{root}/./sub//deep.mp4", "{root}/sub/deep.mp4", None),
        ("{root}/missing.mp4", "{root}/missing.mp4", None),  # allowed; NOT_FOUND is the service's
        ("{root}/../private/secret.mp4", SourceNotAllowed, "outside the folders allowed"),
        ("{root}/sub/../../private/secret.mp4", SourceNotAllowed, "outside the folders allowed"),
        ("{root}/../../../../../../etc/passwd", SourceNotAllowed, "outside the folders allowed"),
        ("{root}-sibling/clip.mp4", SourceNotAllowed, "outside the folders allowed"),  # a prefix only
        ("{root}/link-out", SourceNotAllowed, "through a symbolic link"),
        ("{root}/dir-out/secret.mp4", SourceNotAllowed, "through a symbolic link"),
        ("{root}/etc-passwd", SourceNotAllowed, "through a symbolic link"),
        ("{root}/link-in", "{root}/sub/deep.mp4", None),
        ("{outside}/secret.mp4", SourceNotAllowed, FILE_ROOTS_ENV),
        ("relative/clip.mp4", SourceNotAllowed, "outside the folders allowed"),  # the cwd is not a root here
        ("concat:/etc/passwd|/etc/group", SourceNotAllowed, "outside the folders allowed"),
        # file:// URLs are paths
        ("file:///etc/passwd", SourceNotAllowed, "outside the folders allowed"),
        ("file://{root}/clip.mp4", "{root}/clip.mp4", None),
        ("FILE://{root}/clip.mp4", "{root}/clip.mp4", None),
        ("file://localhost{root}/clip.mp4", "{root}/clip.mp4", None),
        ("file://{root}/link-out", SourceNotAllowed, "through a symbolic link"),
        ("file://evil.example.com/etc/passwd", IngestConfigError, "expected file:///path"),
        ("file://{root}/clip.mp4?x=1", IngestConfigError, "without '?' or '#'"),
        # schemes
        ("rtsp://cam.example.com/live", ALLOWED, None),
        ("RTSP://cam.example.com/live", ALLOWED, None),
        ("rtsps://cam.example.com/live", ALLOWED, None),
        ("https://cam.example.com/live.m3u8", ALLOWED, None),
        ("udp://cam.example.com:1234", SourceNotAllowed, SCHEMES_ENV),
        ("tcp://cam.example.com:5000?listen=1", SourceNotAllowed, "tcp:// URLs are not allowed"),
        ("gopher://cam.example.com/x", IngestConfigError, "expected a path or a URL with one of"),
        ("rtsp ://cam.example.com/x", IngestConfigError, "expected a path or a URL"),
        # the machine's own services and the cloud metadata endpoint
        ("rtsp://127.0.0.1/cam", SourceNotAllowed, HOSTS_ENV),
        ("rtsp://localhost/cam", SourceNotAllowed, "host localhost is not allowed"),
        ("http://169.254.169.254/latest/meta-data/", SourceNotAllowed, "address 169.254.169.254"),
        ("http://0.0.0.0:9464/metrics", SourceNotAllowed, "address 0.0.0.0"),
        # IPv6 literals
        ("rtsp://[::1]:554/cam", SourceNotAllowed, "address ::1"),
        ("rtsp://[::ffff:127.0.0.1]/cam", SourceNotAllowed, "address 127.0.0.1"),  # mapped: its IPv4
        ("rtsp://[::ffff:10.20.3.4]/cam", ALLOWED, None),
        ("rtsp://[fd00::1234]:8554/cam", ALLOWED, None),
        ("rtsp://[2001:db8::5]/cam", ALLOWED, None),
        ("rtsp://[2001:db8::6]/cam", SourceNotAllowed, "address 2001:db8::6"),
        ("rtsp://[fe80::1%25eth0]/cam", SourceNotAllowed, "zone ids"),
        ("rtsp://[::1/cam", IngestConfigError, "expected a well-formed URL"),
        # networks match IP literals; numeric forms that resolvers read as IPv4 are refused
        ("rtsp://10.20.99.1/cam", ALLOWED, None),
        ("rtsp://10.21.0.1/cam", SourceNotAllowed, "address 10.21.0.1"),
        ("rtsp://192.0.2.7/cam", ALLOWED, None),
        ("rtsp://192.0.2.8/cam", SourceNotAllowed, "address 192.0.2.8"),
        ("rtsp://127.1/cam", SourceNotAllowed, "four decimal numbers"),
        ("rtsp://2130706433/cam", SourceNotAllowed, "four decimal numbers"),
        ("rtsp://0x7f000001/cam", SourceNotAllowed, "four decimal numbers"),
        ("rtsp://0177.0.0.1/cam", SourceNotAllowed, "four decimal numbers"),
        ("rtsp://10.20.0.1.nip.io/cam", SourceNotAllowed, "host 10.20.0.1.nip.io is not allowed"),
        # userinfo tricks: the host is what follows the last '@', as FFmpeg reads it
        ("rtsp://cam.example.com@127.0.0.1/cam", SourceNotAllowed, "address 127.0.0.1"),
        ("rtsp://127.0.0.1@cam.example.com/cam", ALLOWED, None),
        ("rtsp://user:pa55@cam.example.com/cam", ALLOWED, None),
        ("rtsp://user:pa55@127.0.0.1/cam", SourceNotAllowed, "rtsp://user:***@127.0.0.1/cam"),
        ("rtsp://a@cam.example.com@127.0.0.1/cam", IngestConfigError, "at most one '@'"),
        ("http://cam.example.com\\@127.0.0.1/", IngestConfigError, "no '\\' before the host"),
        ("http://127.0.0.1#@cam.example.com/", SourceNotAllowed, "address 127.0.0.1"),
        ("http://127.0.0.1?@cam.example.com/", SourceNotAllowed, "address 127.0.0.1"),
        # ports are not restricted, but must parse
        ("rtsp://cam.example.com:8554/cam", ALLOWED, None),
        ("rtsp://127.0.0.1:8554/cam", SourceNotAllowed, "address 127.0.0.1"),
        ("rtsp://cam.example.com:99999/cam", IngestConfigError, "expected a port in 0..65535"),
        ("rtsp://cam.example.com:http/cam", IngestConfigError, "expected a port"),
        # host names: exact (any case, one trailing dot), and wildcards for subdomains only
        ("rtsp://CAM.Example.COM./cam", ALLOWED, None),
        ("rtsp://cam.example.com.evil.net/cam", SourceNotAllowed, "host cam.example.com.evil.net"),
        ("rtsp://evilcam.example.com/cam", SourceNotAllowed, "not allowed"),
        ("rtsp://lobby.cams.example.org/cam", ALLOWED, None),
        ("rtsp://a.b.cams.example.org/cam", ALLOWED, None),
        ("rtsp://cams.example.org/cam", SourceNotAllowed, "host cams.example.org is not allowed"),
        ("rtsp://evilcams.example.org/cam", SourceNotAllowed, "not allowed"),
        ("rtsp://cam%2eexample.com/cam", SourceNotAllowed, "neither a DNS name nor an IP address"),
        ("rtsp://kamera.exämple.com/cam", SourceNotAllowed, "neither a DNS name nor an IP address"),
        ("rtsp:///cam", IngestConfigError, "expected a host"),
        ("rtsp://:554/cam", IngestConfigError, "expected a host"),
        # empty and garbage URIs
        ("", IngestConfigError, "expected a file path, folder or URL"),
        ("   ", IngestConfigError, "expected a file path, folder or URL"),
        ("{root}/clip\x00.mp4", IngestConfigError, "no control characters"),
        ("rtsp://cam.example.com/\r\nx", IngestConfigError, "no control characters"),
        ("rtsp://cam.example.com/a b", IngestConfigError, "without spaces"),
        (" rtsp://cam.example.com/x", IngestConfigError, "expected a path or a URL"),
        ("://", IngestConfigError, "expected a path or a URL"),
        ("/" + "a" * 5000, IngestConfigError, "at most 4096 characters, got 5001"),
    ],
)
def test_check(tree: Tree, uri: str, expected: str | type[Exception], message_part: str | None) -> None:
    policy = policy_for(tree)
    uri = tree.fill(uri) if "{" in uri else uri
    if isinstance(expected, type):
        with pytest.raises(expected) as info:
            policy.check(uri)
        assert message_part is not None and message_part in str(info.value)
        assert "object at 0x" not in str(info.value)
        return
    assert policy.check(uri) == (uri if expected == ALLOWED else tree.fill(expected))


def test_a_refused_path_says_nothing_about_whether_it_exists(tree: Tree) -> None:
    policy = policy_for(tree)
    messages = set()
    for path in (tree.outside / "secret.mp4", tree.outside / "no-such.mp4"):
        with pytest.raises(SourceNotAllowed) as info:
            policy.check(str(path))
        messages.add(str(info.value).replace(path.name, "NAME"))
    assert len(messages) == 1


def test_a_path_outside_the_roots_is_refused_without_touching_the_file_system(
    tree: Tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the operator's roots (and the folders above them) may be looked at; the client's path
    is judged by its text."""
    policy = policy_for(tree)
    operator = {str(p) for root in policy.file_roots for p in (Path(root), *Path(root).parents)}
    touched: list[str] = []

    def guarded(real: Callable[..., object]) -> Callable[..., object]:
        def call(path: object, *args: object, **kwargs: object) -> object:
            if os.fspath(path) not in operator:  # type: ignore[call-overload]
                touched.append(os.fspath(path))  # type: ignore[call-overload]
            return real(path, *args, **kwargs)

        return call

    for name in ("stat", "lstat", "readlink", "listdir", "scandir", "open"):
        monkeypatch.setattr(os, name, guarded(getattr(os, name)))
    monkeypatch.setattr(os.path, "realpath", guarded(os.path.realpath))
    for uri in (
        "/etc/passwd",
        f"{tree.root}/../private/secret.mp4",
        "file:///etc/shadow",
        "rtsp://127.0.0.1/",
    ):
        with pytest.raises(SourceNotAllowed):
            policy.check(uri)
    assert touched == []


def test_a_root_that_is_a_symbolic_link(tree: Tree, tmp_path: Path) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(tree.root)
    policy = SourcePolicy.parse(file_roots=str(alias))
    assert policy.check(f"{alias}/clip.mp4") == f"{tree.root}/clip.mp4"
    assert policy.check(f"{tree.root}/clip.mp4") == f"{tree.root}/clip.mp4"  # the same folder
    with pytest.raises(SourceNotAllowed, match="through a symbolic link"):
        policy.check(f"{alias}/link-out")


def test_defaults_allow_the_working_folder_and_stream_schemes_but_no_host(
    tree: Tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tree.root)
    policy = SourcePolicy.parse()
    assert policy.file_roots == (str(tree.root),)
    assert policy.schemes == frozenset({"rtsp", "rtsps", "http", "https"})
    assert (policy.host_names, policy.host_suffixes, policy.networks) == (frozenset(), (), ())
    assert policy.check("clip.mp4") == f"{tree.root}/clip.mp4"
    assert policy.check("sub/deep.mp4") == f"{tree.root}/sub/deep.mp4"
    with pytest.raises(SourceNotAllowed, match="outside the folders"):
        policy.check("../private/secret.mp4")
    with pytest.raises(SourceNotAllowed, match=f"host cam.example.com is not allowed .* {HOSTS_ENV}"):
        policy.check("rtsp://cam.example.com/live")


def test_none_allows_nothing(tree: Tree) -> None:
    policy = SourcePolicy.parse(schemes="none", hosts="none", file_roots="NONE")
    assert policy == SourcePolicy()
    for uri in (f"{tree.root}/clip.mp4", "rtsp://cam.example.com/x"):
        with pytest.raises(SourceNotAllowed):
            policy.check(uri)


def test_parse_reads_every_kind_of_host_entry() -> None:
    policy = SourcePolicy.parse(
        hosts=" Cam.Example.com. , *.Cams.Example.org,10.0.0.0/8,::1,[fd00::1],::ffff:10.9.9.9"
    )
    assert policy.host_names == frozenset({"cam.example.com"})
    assert policy.host_suffixes == (".cams.example.org",)
    assert policy.networks == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
        ipaddress.ip_network("fd00::1/128"),
        ipaddress.ip_network("10.9.9.9/32"),
    )
    assert policy.describe().startswith("schemes=http,https,rtsp,rtsps hosts=cam.example.com,*.cams")


@pytest.mark.parametrize(
    ("settings", "message_part"),
    [
        ({"schemes": "rtsp,gopher"}, "allow_schemes: expected some of"),
        ({"schemes": "file"}, "file:// URLs follow allow_file_roots"),
        ({"schemes": "rtsp,,http"}, "allow_schemes: expected comma-separated entries"),
        ({"schemes": ""}, "allow_schemes: expected comma-separated entries (or 'none')"),
        ({"hosts": "10.0.0.1/8"}, "allow_hosts: expected a CIDR network such as 10.0.0.0/8"),
        ({"hosts": "10.0.0.0/33"}, "allow_hosts: expected a CIDR network"),
        ({"hosts": "127.1"}, "allow_hosts: expected a host name, *.suffix, an IP address or a CIDR"),
        ({"hosts": "*"}, "allow_hosts: expected a host name"),
        ({"hosts": "*.1"}, "allow_hosts: expected '*.' and a DNS name"),
        ({"hosts": "cam example"}, "allow_hosts: expected a host name"),
        ({"hosts": "fe80::1%eth0"}, "allow_hosts: expected a host name"),
        ({"file_roots": "/data,\x00"}, "allow_file_roots: expected folder paths"),
    ],
)
def test_parse_errors(settings: dict[str, str], message_part: str) -> None:
    with pytest.raises(IngestConfigError) as info:
        SourcePolicy.parse(**settings)
    assert message_part in str(info.value)


@pytest.mark.parametrize(
    ("fields", "message_part"),
    [
        ({"schemes": {"rtsp"}}, "schemes: expected a frozenset, got set"),
        ({"schemes": frozenset({"file"})}, "schemes: expected URL schemes other than 'file'"),
        ({"schemes": frozenset({"RTSP"})}, "schemes: expected some of"),
        ({"host_names": frozenset({"Cam.Example.com"})}, "host_names: expected lower-case DNS names"),
        ({"host_names": frozenset({"10.0.0.1"})}, "host_names: expected lower-case DNS names (not numeric)"),
        ({"host_suffixes": ("example.com",)}, "host_suffixes: expected '.' and a lower-case DNS name"),
        ({"networks": ("10.0.0.0/8",)}, "networks: expected IP networks, got str"),
        ({"file_roots": ("data",)}, "file_roots: expected absolute, normalised paths, got 'data'"),
        ({"file_roots": ("/data/../etc",)}, "file_roots: expected absolute, normalised paths"),
        ({"file_roots": (Path("/data"),)}, "file_roots: expected str paths, got PosixPath"),
    ],
)
def test_construction_is_validated(fields: dict[str, object], message_part: str) -> None:
    with pytest.raises(IngestConfigError) as info:
        SourcePolicy(**fields)  # type: ignore[arg-type]
    assert message_part in str(info.value)

"""Napster frames and messages: vectors from napster.txt, round-trips, garbage.

Spec: opennap ``doc/napster.txt`` (drscholl, 2000-12-28).  Every example
payload below is copied from the spec's text for that message.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from napwirekit import ALL_MESSAGE_CLASSES, messages_of, search_queries

from peerlab.errors import LocalProtocolError, RemoteProtocolError
from peerlab.wire import napster as nap
from peerlab.wire.napster import (
    Compare,
    Constraint,
    FrameDecoder,
    LinkType,
    SearchField,
    SearchQuery,
    decode,
    encode,
    encode_payload,
)

# ------------------------------------------------------------------ framing


def test_login_frame_bytes_from_the_spec_example() -> None:
    # Section 2: <length><type><data>, both little-endian; message 2's example.
    msg = nap.Login("foo", "badpass", 6699, "nap v0.8", LinkType.K33_6)
    payload = b'foo badpass 6699 "nap v0.8" 3'
    assert len(payload) == 29
    assert encode(msg) == b"\x1d\x00\x02\x00" + payload
    assert decode(2, payload) == msg


def test_length_256_is_encoded_00_01() -> None:
    # Section 2: "256 would be encoded as { 0x00, 0x01 }".
    frame = nap.encode_frame(404, b"x" * 256)
    assert frame[:4] == b"\x00\x01\x94\x01"
    assert FrameDecoder().feed(frame) == [nap.Frame(404, b"x" * 256)]


def test_empty_messages_are_bare_headers() -> None:
    assert encode(nap.SearchEnd()) == b"\x00\x00\xca\x00"
    assert encode(nap.Downloading()) == b"\x00\x00\xda\x00"
    assert encode(nap.DownloadComplete()) == b"\x00\x00\xdb\x00"
    assert encode(nap.Uploading()) == b"\x00\x00\xdc\x00"
    assert encode(nap.UploadComplete()) == b"\x00\x00\xdd\x00"
    assert encode(nap.ServerStatsRequest()) == b"\x00\x00\xd6\x00"
    assert encode(nap.Motd()) == b"\x00\x00\x6d\x02"
    assert encode(nap.NickNotRegistered()) == b"\x00\x00\x08\x00"


def _stream() -> tuple[bytes, list[nap.Frame]]:
    msgs = [
        nap.Login("foo", "badpass", 6699, "nap v0.8", LinkType.K33_6),
        nap.SearchEnd(),
        nap.Motd("welcome to peerlab"),
        nap.Unknown(4242, b"\x00\x01 raw"),
    ]
    data = b"".join(encode(m) for m in msgs)
    frames = [nap.Frame(m.type if isinstance(m, nap.Unknown) else m.TYPE, encode_payload(m))
              for m in msgs]
    return data, frames


def test_frame_decoder_fed_whole() -> None:
    data, frames = _stream()
    decoder = FrameDecoder()
    assert decoder.feed(data) == frames
    assert decoder.buffered == 0
    decoder.check_eof()


def test_frame_decoder_fed_byte_by_byte() -> None:
    data, frames = _stream()
    decoder = FrameDecoder()
    got: list[nap.Frame] = []
    for i in range(len(data)):
        got.extend(decoder.feed(data[i : i + 1]))
    assert got == frames
    assert decoder.buffered == 0


@given(st.lists(st.integers(1, 40), max_size=20))
def test_frame_decoder_any_split(cuts: list[int]) -> None:
    data, frames = _stream()
    decoder = FrameDecoder()
    got: list[nap.Frame] = []
    pos = 0
    for cut in cuts:
        got.extend(decoder.feed(data[pos : pos + cut]))
        pos += cut
    got.extend(decoder.feed(data[pos:]))
    assert got == frames


def test_oversized_frame_poisons_the_decoder() -> None:
    decoder = FrameDecoder()
    header = struct.pack("<HH", nap.MAX_PAYLOAD_BYTES + 1, 200)
    with pytest.raises(RemoteProtocolError):
        decoder.feed(header)
    with pytest.raises(RemoteProtocolError):
        decoder.feed(encode(nap.SearchEnd()))
    assert decoder.buffered == 0


def test_frame_at_the_bound_passes_and_smaller_bound_applies() -> None:
    payload = b"a" * nap.MAX_PAYLOAD_BYTES
    assert FrameDecoder().feed(struct.pack("<HH", len(payload), 404) + payload) == [
        nap.Frame(404, payload)
    ]
    with pytest.raises(RemoteProtocolError):
        FrameDecoder(max_payload=10).feed(struct.pack("<HH", 11, 404))


def test_truncated_frame_at_eof_raises() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(encode(nap.Motd("hello"))[:-1]) == []
    assert decoder.buffered == 8
    with pytest.raises(RemoteProtocolError):
        decoder.check_eof()
    half_header = FrameDecoder()
    half_header.feed(b"\x05")
    with pytest.raises(RemoteProtocolError):
        half_header.check_eof()


def test_encode_refuses_oversized_payloads() -> None:
    with pytest.raises(LocalProtocolError):
        encode(nap.Motd("x" * (nap.MAX_PAYLOAD_BYTES + 1)))
    with pytest.raises(LocalProtocolError):
        nap.encode_frame(70000, b"")
    with pytest.raises(LocalProtocolError):
        encode(nap.Unknown(5, b"x" * (nap.MAX_PAYLOAD_BYTES + 1)))


# ------------------------------------------------------------------ spec examples


def test_new_user_login_example() -> None:
    msg = decode(6, b'foo foo 6699 "nap v0.8" 3 email@here.com')
    assert msg == nap.NewUserLogin("foo", "foo", 6699, "nap v0.8", LinkType.K33_6, "email@here.com")
    assert encode_payload(msg) == b'foo foo 6699 "nap v0.8" 3 email@here.com'


def test_login_with_windows_build_number() -> None:
    # Message 2: "[ <num> ] build number for the windows client".
    msg = decode(2, b'lefty secret 0 "v2.0 BETA 8" 7 1')
    assert msg == nap.Login("lefty", "secret", 0, "v2.0 BETA 8", LinkType.CABLE, "1")
    assert encode_payload(msg) == b'lefty secret 0 "v2.0 BETA 8" 7 1'


def test_nick_check_family() -> None:
    assert decode(7, b"lefty") == nap.NickCheck("lefty")
    assert decode(8, b"") == nap.NickNotRegistered()
    assert decode(9, b"") == nap.NickAlreadyRegistered()
    assert decode(10, b"") == nap.InvalidNick()
    assert encode(nap.InvalidNick()) == b"\x00\x00\x0a\x00"


def test_login_ack_and_errors() -> None:
    assert decode(3, b"anon@napster.com") == nap.LoginAck("anon@napster.com")
    assert decode(0, b"Invalid Password") == nap.LoginError("Invalid Password")
    err = nap.ErrorMessage("User nosuchuser is not currently online.")
    assert encode(err) == b"\x28\x00\x94\x01User nosuchuser is not currently online."
    assert decode(404, b"ping failed, blah is not online") == nap.ErrorMessage(
        "ping failed, blah is not online"
    )


SHARE = b'"generic band - generic song.mp3" b92870e0d41bc8e698cf2f0a1ddfeac7 443332 128 44100 60'


def test_share_example() -> None:
    msg = decode(100, SHARE)
    assert msg == nap.ShareFile(
        "generic band - generic song.mp3", "b92870e0d41bc8e698cf2f0a1ddfeac7",
        443332, 128, 44100, 60,
    )
    assert encode(msg) == struct.pack("<HH", len(SHARE), 100) + SHARE


def test_unshare_quoted_and_bare() -> None:
    assert decode(102, b'"generic band - generic song.mp3"') == nap.UnshareFile(
        "generic band - generic song.mp3"
    )
    # The spec writes <filename> unquoted: the whole payload is the name.
    assert decode(102, b"C:\\MP3\\a b.mp3") == nap.UnshareFile("C:\\MP3\\a b.mp3")
    assert encode_payload(nap.UnshareFile("a b.mp3")) == b'"a b.mp3"'
    assert decode(110, b"") == nap.UnshareAll()


RESULT = (
    b'"random band - random song.mp3" 7d733c1e7419674744768db71bff8bcd 2558199 128 44100 159 '
    b"lefty 3437166285 4"
)


def test_search_result_example() -> None:
    msg = decode(201, RESULT)
    assert msg == nap.SearchResult(
        "random band - random song.mp3", "7d733c1e7419674744768db71bff8bcd", 2558199, 128,
        44100, 159, "lefty", 3437166285, LinkType.K56,
    )
    assert isinstance(msg, nap.SearchResult)
    assert nap.napster_to_ip(msg.ip) == "205.254.222.204"
    assert encode(msg) == struct.pack("<HH", len(RESULT), 201) + RESULT
    assert encode(msg)[:4] == b"\x69\x00\xc9\x00"


def test_search_result_with_weight() -> None:
    msg = decode(201, RESULT + b" -3")
    assert isinstance(msg, nap.SearchResult) and msg.weight == -3
    assert encode_payload(msg) == RESULT + b" -3"


def test_download_request_and_ack() -> None:
    req = decode(203, b'mred "C:\\Program Files\\Napster\\generic cowboy song.mp3"')
    assert req == nap.DownloadRequest("mred", "C:\\Program Files\\Napster\\generic cowboy song.mp3")
    # The spec's 204 example gives ip 4877911892, which does not fit 32 bits:
    # a real server never sends it, and we refuse it.
    bad = (
        b'lefty 4877911892 6699 "generic band - generic song.mp3" '
        b"10fe9e623b1962da85eea61df7ac1f69 3"
    )
    with pytest.raises(RemoteProtocolError):
        decode(204, bad)
    good = bad.replace(b"4877911892", b"16777343")
    ack = decode(204, good)
    assert ack == nap.DownloadAck(
        "lefty", 16777343, 6699, "generic band - generic song.mp3",
        "10fe9e623b1962da85eea61df7ac1f69", LinkType.K33_6,
    )
    assert encode_payload(ack) == good
    alt = decode(501, good)
    assert alt == nap.AlternateDownloadAck(
        "lefty", 16777343, 6699, "generic band - generic song.mp3",
        "10fe9e623b1962da85eea61df7ac1f69", LinkType.K33_6,
    )
    assert decode(500, b'lefty "a.mp3"') == nap.AlternateDownloadRequest("lefty", "a.mp3")
    assert decode(206, b'lefty "a.mp3"') == nap.GetError("lefty", "a.mp3")


def test_browse_family() -> None:
    line = (
        b'foouser "generic band - generic song.mp3" b92870e0d41bc8e698cf2f0a1ddfeac7 '
        b"443332 128 44100 60"
    )
    msg = decode(212, line)
    assert msg == nap.BrowseResult(
        "foouser", "generic band - generic song.mp3", "b92870e0d41bc8e698cf2f0a1ddfeac7",
        443332, 128, 44100, 60,
    )
    assert encode_payload(msg) == line
    assert decode(211, b"foouser") == nap.BrowseRequest("foouser")
    assert decode(213, b"foouser") == nap.BrowseEnd("foouser")
    assert decode(213, b"foouser 16777343") == nap.BrowseEnd("foouser", 16777343)
    assert decode(210, b"nosuch") == nap.UserSignoff("nosuch")
    assert decode(209, b"lefty 7") == nap.UserSignon("lefty", LinkType.CABLE)


def test_server_stats_both_directions() -> None:
    assert decode(214, b"") == nap.ServerStatsRequest()
    assert decode(214, b"553 64692 254") == nap.ServerStats(553, 64692, 254)
    assert encode_payload(nap.ServerStats(553, 64692, 254)) == b"553 64692 254"


def test_whois_examples() -> None:
    line = b'lefty "User" 1203 "80\'s " "Active" 0 0 0 3 "nap v0.8"'
    msg = decode(604, line)
    assert msg == nap.WhoisResponse(
        "lefty", "User", 1203, "80's ", "Active", 0, 0, 0, LinkType.K33_6, "nap v0.8"
    )
    assert encode_payload(msg) == line
    full = line + b" 12 34 unavailable 8888 6699 unavailable"
    mod = decode(604, full)
    assert isinstance(mod, nap.WhoisResponse)
    assert (mod.total_downloads, mod.total_uploads, mod.ip, mod.connecting_port,
            mod.data_port, mod.email) == (12, 34, "unavailable", 8888, 6699, "unavailable")
    assert encode_payload(mod) == full
    # OpenNap tells admins the user's server too (libpurple's sample line).
    admin = b'flounder "Elite" 37 " " "Active" 0 0 0 0 "purple 0.63cvs" 0 0 192.168.1.41 ' \
        b"32798 0 unknown opennap.example"
    seen = decode(604, admin)
    assert isinstance(seen, nap.WhoisResponse) and seen.server == "opennap.example"
    assert seen.ip == "192.168.1.41" and seen.channels == " "
    assert encode_payload(seen) == admin
    with pytest.raises(RemoteProtocolError):
        decode(604, line + b" 12 34")  # the extras come all together
    with pytest.raises(LocalProtocolError):
        encode(nap.WhoisResponse("a", "User", 1, "", "Active", 0, 0, 0, LinkType.DSL, "x", 1))
    assert decode(603, b"lefty") == nap.WhoisRequest("lefty")
    assert decode(605, b"lefty user 947304224") == nap.WhowasResponse("lefty", "user", 947304224)


def test_upload_request_accept_and_queue_examples() -> None:
    # 607 gained the downloader's speed on 2000-12-28; both forms are in use.
    assert decode(607, b'lefty "generic band - generic song.mp3" 7') == nap.UploadRequest(
        "lefty", "generic band - generic song.mp3", LinkType.CABLE
    )
    assert decode(607, b'lefty "generic band - generic song.mp3"') == nap.UploadRequest(
        "lefty", "generic band - generic song.mp3"
    )
    accept = nap.UploadAccept("lefty", "generic band - generic song.mp3")
    assert encode_payload(accept) == b'lefty "generic band - generic song.mp3"'
    assert decode(608, encode_payload(accept)) == accept
    assert decode(609, b'lefty "x.mp3"') == nap.AcceptFailed("lefty", "x.mp3")
    assert decode(619, b'joebob "C:\\MP3\\Generic Band - Generic Song.mp3" 3') == nap.QueueLimit(
        "joebob", "C:\\MP3\\Generic Band - Generic Song.mp3", 3
    )
    assert decode(
        620, b'joebob "C:\\MP3\\Generic Band - Generic Song.mp3" 1234567 3'
    ) == nap.QueueLimitNotice("joebob", "C:\\MP3\\Generic Band - Generic Song.mp3", 1234567, 3)


def test_small_messages() -> None:
    assert decode(621, b"Welcome to peerlab!") == nap.Motd("Welcome to peerlab!")
    assert decode(621, b"") == nap.Motd("")
    assert decode(751, b"lefty") == nap.Ping("lefty")
    assert decode(752, b"lefty") == nap.Pong("lefty")
    assert encode(nap.Ping("lefty")) == b"\x05\x00\xef\x02lefty"
    assert decode(205, b"lefty hello there  friend") == nap.PrivateMessage(
        "lefty", "hello there  friend"
    )
    assert decode(600, b"lefty") == nap.LinkSpeedRequest("lefty")
    assert decode(601, b"lefty 9") == nap.LinkSpeed("lefty", LinkType.T1)
    assert decode(626, b"lefty") == nap.DataPortError("lefty")
    assert decode(700, b"8") == nap.ChangeLinkSpeed(LinkType.DSL)
    assert decode(703, b"6699") == nap.ChangeDataPort(6699)


def test_unknown_types_keep_their_payload() -> None:
    msg = decode(4, b"2.0")  # version check: not modelled
    assert msg == nap.Unknown(4, b"2.0")
    assert encode(msg) == b"\x03\x00\x04\x002.0"
    assert decode(9999, b"\x00\xff") == nap.Unknown(9999, b"\x00\xff")


# ------------------------------------------------------------------ search grammar


def test_search_examples_from_the_spec() -> None:
    one = decode(
        200,
        b'FILENAME CONTAINS "Sneaker Pimps" MAX_RESULTS 75 FILENAME CONTAINS "tesko suicide" '
        b'BITRATE "AT LEAST" "128"',
    )
    assert one == nap.SearchRequest(SearchQuery(
        contains=("Sneaker Pimps", "tesko suicide"),
        max_results=75,
        constraints=(Constraint(SearchField.BITRATE, Compare.AT_LEAST, 128),),
    ))
    assert isinstance(one, nap.SearchRequest)
    assert one.query.keywords() == ("sneaker", "pimps", "tesko", "suicide")
    two = decode(200, b'MAX_RESULTS 100 FILENAME CONTAINS "Ventolin" LINESPEED "EQUAL TO" 10')
    assert two == nap.SearchRequest(SearchQuery(
        contains=("Ventolin",), max_results=100,
        constraints=(Constraint(SearchField.LINESPEED, Compare.EQUAL_TO, 10),),
    ))


def test_search_payload_bytes() -> None:
    query = SearchQuery(
        contains=("little toot",),
        max_results=100,
        constraints=(
            Constraint(SearchField.LINESPEED, Compare.AT_LEAST, 7),
            Constraint(SearchField.BITRATE, Compare.AT_LEAST, 128),
            Constraint(SearchField.FREQ, Compare.EQUAL_TO, 44100),
            Constraint(SearchField.SIZE, Compare.AT_BEST, 9000000),
            Constraint(SearchField.DURATION, Compare.AT_LEAST, 60),
        ),
    )
    payload = (
        b'FILENAME CONTAINS "little toot" MAX_RESULTS 100 LINESPEED "AT LEAST" 7 '
        b'BITRATE "AT LEAST" "128" FREQ "EQUAL TO" "44100" SIZE "AT BEST" 9000000 '
        b'DURATION "AT LEAST" 60'
    )
    msg = nap.SearchRequest(query)
    assert encode(msg) == struct.pack("<HH", len(payload), 200) + payload
    assert decode(200, payload) == msg


def test_search_extensions_and_case() -> None:
    q = SearchQuery.parse(
        'filename contains "a b" Max_Results 5 bitrate "at most" 160 '
        'FILENAME EXCLUDES "live" TYPE audio/mp3 LOCAL_ONLY'
    )
    assert q.contains == ("a b",)
    assert q.max_results == 5
    # OpenNap 0.x spelled AT BEST "AT MOST".
    assert q.constraints == (Constraint(SearchField.BITRATE, Compare.AT_BEST, 160),)
    assert q.excludes == ("live",)
    assert q.excluded_keywords() == ("live",)
    assert q.content_type == "audio/mp3"
    assert q.local_only
    assert SearchQuery.parse("FILENAME CONTAINS x LOCAL").local_only


def test_search_bounds_and_admits() -> None:
    q = SearchQuery(
        contains=("x",),
        constraints=(
            Constraint(SearchField.BITRATE, Compare.AT_LEAST, 128),
            Constraint(SearchField.BITRATE, Compare.AT_BEST, 192),
            Constraint(SearchField.LINESPEED, Compare.EQUAL_TO, 7),
        ),
    )
    assert q.bounds(SearchField.BITRATE) == (128, 192)
    assert q.bounds(SearchField.LINESPEED) == (7, 7)
    assert q.bounds(SearchField.SIZE) == (0, None)
    ok = dict(linespeed=7, bitrate=160, freq=44100, size=1, duration=1)
    assert q.admits(**ok)
    assert not q.admits(**{**ok, "bitrate": 127})
    assert not q.admits(**{**ok, "bitrate": 193})
    assert not q.admits(**{**ok, "linespeed": 8})
    assert q.admits(**{**ok, "bitrate": 192})


def test_keywords_follow_opennap_tokenizer() -> None:
    q = SearchQuery(contains=("Don't  Stop-me_now", "don't"))
    assert q.keywords() == ("don't", "stop", "me", "now")


@pytest.mark.parametrize(
    "payload",
    [
        b"FILENAME",
        b'FILENAME CONTAINS',
        b'FILENAME MATCHES "x"',
        b"MAX_RESULTS",
        b"MAX_RESULTS ten",
        b"MAX_RESULTS -1",
        b'BITRATE "AT LEAST"',
        b'BITRATE "ABOUT" 128',
        b'BITRATE "AT LEAST" 12x',
        b'LINESPEED "AT LEAST" 11',
        b'FILENAME CONTAINS "unterminated',
        b'FILENAME CONTAINS "a "quoted" string" MAX_RESULTS 100',
        b"SORT_BY size",
        b"TYPE",
    ],
)
def test_bad_searches_raise_invalid_search_request(payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode(200, payload)
    assert "search" in str(info.value)


@given(search_queries)
def test_search_query_round_trip(query: SearchQuery) -> None:
    msg = nap.SearchRequest(query)
    assert decode(200, encode_payload(msg)) == msg


# ------------------------------------------------------------------ text and bytes


def test_latin1_bytes_survive_byte_for_byte() -> None:
    payload = b'"Bj\xf6rk - J\xf3ga.mp3" ' + b"0" * 32 + b" 1 128 44100 1"
    msg = decode(100, payload)
    assert isinstance(msg, nap.ShareFile)
    assert msg.filename == "Bj\u00f6rk - J\u00f3ga.mp3"
    assert encode_payload(msg) == payload
    # A UTF-8 name arrives as its bytes read as latin-1, and goes back unchanged.
    utf8 = '"\u00e9t\u00e9.mp3"'.encode()
    assert encode_payload(decode(102, utf8)) == utf8


@pytest.mark.parametrize(
    ("mtype", "payload"),
    [
        (2, b'foo pass 6699 "nap" 3\x00'),
        (2, b'foo pass 6699 "nap\n" 3'),
        (100, SHARE + b"\r\n"),
        (621, b"motd\x1b[31m"),
        (404, b"\x7f"),
    ],
)
def test_control_bytes_are_refused(mtype: int, payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode(mtype, payload)


def test_tab_is_allowed_in_text() -> None:
    assert decode(621, b"a\tb") == nap.Motd("a\tb")


@pytest.mark.parametrize(
    ("mtype", "payload"),
    [
        (2, b""),
        (2, b"foo"),
        (2, b'foo pass 6699 "nap v0.8"'),
        (2, b'foo pass 66999 "nap v0.8" 3'),
        (2, b'foo pass 6699 "nap v0.8" 11'),
        (2, b'foo pass 6699 "nap v0.8" 3 1 extra'),
        (2, b'foo pass -1 "nap v0.8" 3'),
        (2, b'foo pass \xb2 "nap v0.8" 3'),  # superscript two: a digit to str.isdigit
        (2, b'"fo o" pass 6699 "nap" 3'),
        (2, b"x" * 65 + b' pass 6699 "nap" 3'),
        (100, b'"" ' + b"0" * 32 + b" 1 1 1 1"),
        (100, b'"' + b"a" * (nap.MAX_FILENAME_BYTES + 1) + b'" md5 1 1 1 1'),
        (100, b'"a.mp3" ' + b"0" * 65 + b" 1 1 1 1"),
        (100, b'"a.mp3" md5 1 1 1'),
        (100, b'"a.mp3" md5 99999999999999999999 1 1 1'),
        (100, b'"a.mp3" md5 9223372036854775808 1 1 1'),
        (100, b'"a.mp3" md5 1 4294967296 1 1'),
        (100, b'"a.mp3"md5 1 1 1 1'),
        (100, b'"a.mp3 md5 1 1 1 1'),
        (100, b'a"b md5 1 1 1 1'),
        (201, RESULT.replace(b" 4", b" 4 x")),
        (201, RESULT.replace(b"3437166285", b"4294967296")),
        (202, b"junk"),
        (213, b"nick 1 2"),
        (214, b"1 2"),
        (102, b'"a" "b"'),
        (102, b""),
        (205, b""),
        (604, b"lefty"),
        (703, b"65536"),
        (8, b"x"),
        (751, b" ".join([b"a"] * (nap.MAX_FIELDS + 1))),
    ],
)
def test_garbage_payloads_raise_remote_protocol_error(mtype: int, payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode(mtype, payload)


def test_runs_of_spaces_are_tolerated() -> None:
    assert decode(2, b'  foo  badpass   6699 "nap v0.8"  3 ') == nap.Login(
        "foo", "badpass", 6699, "nap v0.8", LinkType.K33_6
    )


@pytest.mark.parametrize(
    "msg",
    [
        nap.ShareFile('say "hi".mp3', "0" * 32, 1, 1, 1, 1),
        nap.ShareFile("", "0" * 32, 1, 1, 1, 1),
        nap.ShareFile("a\nb.mp3", "0" * 32, 1, 1, 1, 1),
        nap.ShareFile("\u2603.mp3", "0" * 32, 1, 1, 1, 1),
        nap.ShareFile("a.mp3", "0" * 32, -1, 1, 1, 1),
        nap.ShareFile("a.mp3", "0" * 32, 1, 2**32, 1, 1),
        nap.ShareFile("a.mp3", "has space", 1, 1, 1, 1),
        nap.Login("two words", "pw", 1, "x", LinkType.DSL),
        nap.Login("foo", "", 1, "x", LinkType.DSL),
        nap.Login("foo", "pw", 70000, "x", LinkType.DSL),
        nap.Login("foo", "pw", 1, 'say "x"', LinkType.DSL),
        nap.BrowseEnd("", None),
        nap.PrivateMessage("a b", "x"),
        nap.SearchRequest(SearchQuery(contains=('"',))),
        nap.SearchRequest(SearchQuery(constraints=(
            Constraint(SearchField.LINESPEED, Compare.AT_LEAST, 11),))),
        nap.Motd("line one\nline two"),
    ],
)
def test_encoding_bad_values_is_a_local_error(msg: nap.Message) -> None:
    with pytest.raises(LocalProtocolError):
        encode(msg)


# ------------------------------------------------------------------ helpers


def test_split_fields() -> None:
    assert nap.split_fields('foo "nap v0.8" 3') == ["foo", "nap v0.8", "3"]
    assert nap.split_fields('"" x') == ["", "x"]
    assert nap.split_fields("") == []
    with pytest.raises(RemoteProtocolError):
        nap.split_fields('a"b')
    assert nap.quote("a b") == '"a b"'
    with pytest.raises(LocalProtocolError):
        nap.quote('a"b')


def test_napster_ip_numbers() -> None:
    assert nap.ip_to_napster("127.0.0.1") == 16777343
    assert nap.napster_to_ip(16777343) == "127.0.0.1"
    assert nap.napster_to_ip(3437166285) == "205.254.222.204"
    assert nap.ip_to_napster("205.254.222.204") == 3437166285
    for bad in ("1.2.3", "1.2.3.256", "a.b.c.d", "1.2.3.4.5", "", "1..2.3"):
        with pytest.raises(ValueError):
            nap.ip_to_napster(bad)
    with pytest.raises(ValueError):
        nap.napster_to_ip(2**32)


def test_link_type_labels() -> None:
    assert [t.label for t in LinkType] == [
        "Unknown", "14.4", "28.8", "33.6", "56K", "ISDN-64K", "ISDN-128K",
        "Cable", "DSL", "T1", "T3+",
    ]
    assert [int(t) for t in LinkType] == list(range(11))


def test_nick_alphabet() -> None:
    assert nap.is_valid_nick("lefty_[1]{x}-@^!$")
    assert not nap.is_valid_nick("two words")
    assert not nap.is_valid_nick("")
    assert not nap.is_valid_nick("caf\u00e9")
    assert not nap.is_valid_nick("x" * (nap.MAX_NICK_BYTES + 1))


# ------------------------------------------------------------------ properties


@pytest.mark.parametrize("cls", ALL_MESSAGE_CLASSES, ids=lambda c: c.__name__)
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_message_round_trips(cls: type[nap.Message], data: st.DataObject) -> None:
    msg = data.draw(messages_of(cls))
    frame = encode(msg)
    frames = FrameDecoder().feed(frame)
    assert len(frames) == 1
    assert nap.decode_frame(frames[0]) == msg


@settings(max_examples=400)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_raise_only_remote_protocol_error(data: bytes) -> None:
    decoder = FrameDecoder(max_payload=512)
    try:
        for frame in decoder.feed(data):
            try:
                decode(frame.type, frame.payload)
            except RemoteProtocolError:
                pass
        decoder.check_eof()
    except RemoteProtocolError:
        pass


_MODELLED = sorted(nap.MESSAGE_TYPES)


@settings(max_examples=600)
@given(
    st.sampled_from(_MODELLED),
    st.one_of(
        st.binary(max_size=300),
        st.text(st.sampled_from('ab "0123456789-\t\xe9'), max_size=80).map(
            lambda s: s.encode("latin-1")
        ),
    ),
)
def test_garbage_payloads_raise_only_remote_protocol_error(mtype: int, payload: bytes) -> None:
    try:
        msg = decode(mtype, payload)
    except RemoteProtocolError:
        return
    # What decodes re-encodes to something that decodes the same.
    assert decode(mtype, encode_payload(msg)) == msg

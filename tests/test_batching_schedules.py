"""Schedules: parsing, batch_size_at at and around every boundary, realised switch steps."""

from fractions import Fraction

import pytest

from bsjax.batching import (
    BatchConfigError,
    ConstantSchedule,
    DoublingSchedule,
    RampSchedule,
    TableSchedule,
    default_batch_config,
    format_count,
    parse_count,
    reachable_sizes,
    schedule_from_config,
    switch_points,
)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("64", 64),
        ("2M", 2_000_000),
        ("1.5M", 1_500_000),
        ("2k", 2_000),
        ("3B", 3_000_000_000),
        ("1T", 10**12),
        ("0.25K", 250),
        ("2e6", 2_000_000),
        (" 7 ", 7),
        (1024, 1024),
        (2e6, 2_000_000),
    ],
)
def test_parse_count_suffixes(text, expected):
    assert parse_count(text) == expected


@pytest.mark.parametrize("text", ["1.5", "abc", "2X", "0.0005K", "", "M", "nan", True])
def test_parse_count_rejects(text):
    with pytest.raises(BatchConfigError, match="ramp_tokens"):
        parse_count(text, name="ramp_tokens")


@pytest.mark.parametrize(
    "n",
    [
        0,
        1,
        999,
        1000,
        1500,
        2_000_000,
        1_500_000,
        1_234_567,
        250_000_000_000,
        3 * 10**12,
        10**13 + 1,
    ],
)
def test_format_count_round_trips(n):
    assert parse_count(format_count(n)) == n


def test_format_count_uses_suffixes():
    assert format_count(2_000_000) == "2M"
    assert format_count(1_500_000_000) == "1.5B"
    assert format_count(1_234_567) == "1234567"


def _check_boundaries(schedule, expected_segments):
    """batch_size_at just before, at and just after every key, plus far beyond."""
    assert schedule.segments() == expected_segments
    assert schedule.switch_tokens() == [k for k, _ in expected_segments[1:]]
    assert schedule.sizes() == sorted({s for _, s in expected_segments})
    assert schedule.batch_size_at(0) == expected_segments[0][1]
    for (key, size), (_, prev) in zip(expected_segments[1:], expected_segments):
        assert schedule.batch_size_at(key - 1) == prev
        assert schedule.batch_size_at(key) == size
        assert schedule.batch_size_at(key + 1) == size
    assert schedule.batch_size_at(10**15) == expected_segments[-1][1]


def test_table_parse_and_boundaries():
    schedule = TableSchedule.parse("0:64 2M:128 8M:256")
    _check_boundaries(schedule, [(0, 64), (2_000_000, 128), (8_000_000, 256)])
    assert schedule.describe() == "table 0:64 2M:128 8M:256"


def test_table_accepts_floats_commas_and_decreasing_sizes():
    schedule = TableSchedule.parse("0:256, 1.5M:128,2.25B:512")
    _check_boundaries(schedule, [(0, 256), (1_500_000, 128), (2_250_000_000, 512)])


def test_table_describe_round_trips():
    schedule = TableSchedule.parse("0:64 1234567:96 1.5B:1024")
    again = TableSchedule.parse(schedule.describe().removeprefix("table "))
    assert again == schedule


def test_table_merges_repeated_sizes():
    schedule = TableSchedule.parse("0:64 1M:64 2M:128")
    assert schedule.switch_tokens() == [2_000_000]
    assert schedule.batch_size_at(1_500_000) == 64


@pytest.mark.parametrize(
    "spec,message",
    [
        ("0:64 8M:128 2M:256", "strictly increasing, but 2M follows 8M"),
        ("0:64 2M:128 2M:256", "strictly increasing"),
        ("0:0 2M:128", "must be positive, got 0"),
        ("0:64 2M:-8", "must be positive, got -8"),
        ("1M:64 2M:128", "must start at token 0"),
        ("", "empty"),
        ("0:64 2M", "not of the form KEY:VALUE"),
        ("0:64 2Q:128", "cannot read '2Q'"),
        ("0:64 2M:1.5", "not a whole number"),
    ],
)
def test_table_errors(spec, message):
    with pytest.raises(BatchConfigError, match=message):
        TableSchedule.parse(spec)


def test_table_reports_every_problem_at_once():
    with pytest.raises(BatchConfigError) as info:
        TableSchedule.parse("1M:0 2M:128 1.5M:64")
    assert len(info.value.problems) == 3


def test_table_rejects_negative_tokens_query():
    with pytest.raises(BatchConfigError, match="non-negative"):
        TableSchedule.parse("0:64").batch_size_at(-1)


def _megatron_ramp(tokens, start, increment, ramp_tokens, end):
    """Reference: size = start + increment * floor(tokens / (ramp_tokens / n)), capped."""
    n = (end - start) // increment
    per_increment = Fraction(ramp_tokens, n)
    return min(end, start + increment * int(Fraction(tokens) / per_increment))


@pytest.mark.parametrize(
    "start,increment,ramp_tokens,end",
    [
        (32, 16, 1_000_000, 128),
        (8, 8, 999_999, 64),
        (3, 5, 7_777, 23),
        (16, 16, 100, 1024),
    ],
)
def test_ramp_matches_megatron_formula(start, increment, ramp_tokens, end):
    schedule = RampSchedule(start, increment, ramp_tokens, end)
    n = (end - start) // increment
    assert schedule.sizes() == list(range(start, end + 1, increment))
    assert len(schedule.switch_tokens()) == n
    probes = {0, ramp_tokens, ramp_tokens + 1, 10 * ramp_tokens}
    for key in schedule.switch_tokens():
        probes |= {key - 1, key, key + 1}
    for t in sorted(probes):
        assert schedule.batch_size_at(t) == _megatron_ramp(t, start, increment, ramp_tokens, end), t
    assert schedule.batch_size_at(ramp_tokens) == end
    assert schedule.batch_size_at(ramp_tokens - 1) < end


def test_ramp_degenerate_is_constant():
    schedule = RampSchedule(64, 16, 1000, 64)
    assert schedule.switch_tokens() == [] and schedule.batch_size_at(5000) == 64


@pytest.mark.parametrize(
    "args,message",
    [
        ((32, 16, 1000, 130), r"multiple of ramp_increment \(16\); e.g. ramp_end=128 or 144"),
        ((32, 0, 1000, 128), "ramp_increment must be a positive int"),
        ((32, 16, 0, 128), "ramp_tokens must be a positive"),
        ((128, 16, 1000, 32), "must be >= the start"),
        ((0, 16, 1000, 128), "must be positive, got 0"),
    ],
)
def test_ramp_errors(args, message):
    with pytest.raises(BatchConfigError, match=message):
        RampSchedule(*args)


def test_doubling_boundaries():
    schedule = DoublingSchedule(64, [1_000_000, 4_000_000, 5_000_000])
    _check_boundaries(schedule, [(0, 64), (1_000_000, 128), (4_000_000, 256), (5_000_000, 512)])


@pytest.mark.parametrize(
    "at,message",
    [
        ([4_000_000, 1_000_000], "strictly increasing"),
        ([0, 1_000_000], "positive token count"),
    ],
)
def test_doubling_errors(at, message):
    with pytest.raises(BatchConfigError, match=message):
        DoublingSchedule(64, at)


def test_constant():
    schedule = ConstantSchedule(48)
    _check_boundaries(schedule, [(0, 48)])
    with pytest.raises(BatchConfigError, match="batch_size: batch size must be positive"):
        ConstantSchedule(-1)


def _simulate(schedule, ctx_len, until_tokens):
    """Reference step loop: each step asks the schedule with tokens consumed before it."""
    points, tokens, step, prev = [], 0, 0, None
    while tokens <= until_tokens:
        size = schedule.batch_size_at(tokens)
        if size != prev:
            points.append((step, tokens, size))
            prev = size
        tokens += size * ctx_len
        step += 1
    return points


@pytest.mark.parametrize(
    "schedule",
    [
        TableSchedule.parse("0:64 2M:128 8M:256"),
        TableSchedule.parse("0:64 100K:128 110K:256 1M:32"),
        RampSchedule(32, 16, 3_000_000, 256),
        DoublingSchedule(16, [250_000, 251_000, 2_000_000]),
        ConstantSchedule(7),
    ],
)
@pytest.mark.parametrize("ctx_len", [128, 512])
def test_switch_points_match_step_loop(schedule, ctx_len):
    last = max([0] + schedule.switch_tokens())
    expected = _simulate(schedule, ctx_len, last + max(schedule.sizes()) * ctx_len)
    points = switch_points(schedule, ctx_len)
    assert [(p.step, p.tokens, p.batch_size) for p in points] == expected
    assert all(p.examples * ctx_len == p.tokens for p in points)


def test_crossing_step_is_not_split_and_short_segments_are_skipped():
    # 64 * 512 = 32768 tokens per step: step 3 starts at 98304 < 100K and
    # step 4 at 131072 >= 110K, so the 128 segment is never used.
    schedule = TableSchedule.parse("0:64 100K:128 110K:256")
    points = switch_points(schedule, 512)
    assert [(p.step, p.tokens, p.batch_size) for p in points] == [(0, 0, 64), (4, 131072, 256)]
    assert reachable_sizes(schedule, 512) == [64, 256]
    assert schedule.sizes() == [64, 128, 256]


def test_schedule_from_config_each_kind():
    cfg = default_batch_config()
    assert schedule_from_config(cfg) == ConstantSchedule(64)
    cfg.schedule, cfg.table = "table", "0:32 1M:64"
    assert schedule_from_config(cfg) == TableSchedule([(0, 32), (1_000_000, 64)])
    cfg.schedule, cfg.ramp_increment, cfg.ramp_tokens, cfg.ramp_end = "ramp", 32, "1.5M", 256
    assert schedule_from_config(cfg) == RampSchedule(64, 32, 1_500_000, 256)
    cfg.schedule, cfg.doubling_tokens = "doubling", "1M 4M"
    assert schedule_from_config(cfg) == DoublingSchedule(64, [1_000_000, 4_000_000])
    cfg.schedule = "cosine"
    with pytest.raises(BatchConfigError, match="schedule: unknown kind 'cosine'"):
        schedule_from_config(cfg)

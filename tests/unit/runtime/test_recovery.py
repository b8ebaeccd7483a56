"""Restore decisions (app.runtime.recovery.plan_restore / restore_done), one test per branch."""

from __future__ import annotations

from app.runtime.recovery import RestorePlan, plan_restore, restore_done


def test_plan__empty_store_and_empty_changelog__reads_nothing() -> None:
    assert plan_restore(None, 0, 0) == RestorePlan(None, False, "changelog empty, nothing local")


def test_plan__empty_store_and_emptied_changelog__reads_nothing_and_reports_it() -> None:
    plan = plan_restore(None, 40, 40)  # its records were deleted: the table starts empty
    assert (plan.start_offset, plan.wipe_local, plan.damaged) == (None, False, True)
    assert "emptied" in plan.reason


def test_plan__empty_store_and_truncated_changelog__reads_what_remains_and_reports_it() -> None:
    plan = plan_restore(None, 7, 20)
    assert (plan.start_offset, plan.wipe_local, plan.damaged) == (7, False, True)
    assert "13 that remain" in plan.reason


def test_plan__empty_store__reads_the_whole_changelog_from_its_start() -> None:
    plan = plan_restore(None, 0, 20)
    assert (plan.start_offset, plan.wipe_local, plan.damaged) == (0, False, False)
    assert "20 offsets" in plan.reason


def test_plan__checkpoint_beyond_the_end__wipes_and_rebuilds_from_the_start() -> None:
    plan = plan_restore(50, 0, 20)  # changelog recreated under the store
    assert (plan.start_offset, plan.wipe_local, plan.damaged) == (0, True, True)
    assert "beyond the changelog end" in plan.reason


def test_plan__checkpoint_beyond_an_empty_changelog__wipes_and_reads_nothing() -> None:
    assert (plan_restore(50, 30, 30).start_offset, plan_restore(50, 30, 30).wipe_local) == (None, True)


def test_plan__checkpoint_at_the_last_offset__beyond_end_means_recreated() -> None:
    # checkpoint == high: the offset the store reflects does not exist yet in the changelog
    assert plan_restore(20, 0, 20).wipe_local


def test_plan__changelog_truncated_past_the_checkpoint__keeps_local_state_and_reads_what_remains() -> None:
    plan = plan_restore(5, 10, 30)  # retention deleted offsets 6..9 the store never saw
    assert (plan.start_offset, plan.wipe_local, plan.damaged) == (10, False, True)
    assert "offsets 6..9 are gone" in plan.reason


def test_plan__changelog_emptied_past_the_checkpoint__keeps_local_state_reads_nothing() -> None:
    plan = plan_restore(5, 30, 30)
    assert (plan.start_offset, plan.wipe_local, plan.damaged) == (None, False, True)


def test_plan__checkpoint_just_before_the_start__reads_on_without_wiping() -> None:
    plan = plan_restore(9, 10, 30)
    assert (plan.start_offset, plan.wipe_local, plan.damaged) == (10, False, False)


def test_plan__local_state_up_to_date__reads_nothing() -> None:
    assert plan_restore(19, 0, 20) == RestorePlan(None, False, "local state is up to date")


def test_plan__local_state_behind__reads_only_what_is_missing() -> None:
    plan = plan_restore(11, 0, 20)
    assert (plan.start_offset, plan.wipe_local) == (12, False)
    assert "8 offsets" in plan.reason


def test_done__at_eof_or_once_the_position_reaches_the_end_seen_at_start() -> None:
    assert restore_done(None, 20, eof=True)
    assert restore_done(20, 20, eof=False)
    assert restore_done(25, 20, eof=False)
    assert not restore_done(19, 20, eof=False)
    assert not restore_done(None, 20, eof=False)

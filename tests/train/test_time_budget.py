import time

from fluxai.train.flow import schedule_step, time_spent


def test_without_a_budget_no_time_is_spent():
    assert time_spent(time.time() - 3600, 0.0) == 0.0


def test_time_spent_is_the_fraction_of_the_budget_used():
    assert abs(time_spent(time.time() - 30, 1.0) - 0.5) < 0.01


def test_the_schedule_follows_the_steps_while_they_are_ahead_of_the_clock():
    assert schedule_step(600, 0, 1000, 0.25) == 600


def test_the_schedule_follows_the_clock_when_it_is_ahead_of_the_steps():
    assert schedule_step(100, 0, 1000, 0.5) == 500


def test_a_resumed_run_spreads_its_budget_over_the_steps_it_has_left():
    assert schedule_step(800, 800, 1000, 0.5) == 900


def test_a_spent_budget_puts_the_schedule_at_its_end_and_no_further():
    assert schedule_step(10, 0, 1000, 3.0) == 1000

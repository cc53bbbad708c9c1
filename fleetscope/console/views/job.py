"""Job: per-rank step time and collective wait over time, the straggler first."""

from __future__ import annotations

import streamlit as st

from fleetscope.console import ui
from fleetscope.console.charts import JOB_LINES, job_lines, series_chart

NO_JOB = "(ranks without a job id)"

config = ui.start()
st.header("Job")
state = ui.live_state(config)
if state is not None:
    ranks = state.ranks.assign(job_id=state.ranks["job_id"].replace("", NO_JOB))
    if ranks.empty:
        st.info("No training ranks report to the exporters (see the training hook in the README).")
    else:
        jobs = sorted(ranks["job_id"].unique())
        wanted = st.query_params.get("job", "")
        job = st.selectbox("Job", jobs, index=jobs.index(wanted) if wanted in jobs else 0)
        mine = (
            ranks[ranks["job_id"] == job]
            .sort_values(["step_seconds", "rank"], ascending=[False, True], na_position="last")
            .reset_index(drop=True)
        )
        timed = mine.dropna(subset=["step_seconds"])
        if not timed.empty:
            slowest = timed.iloc[0]
            median = float(timed["step_seconds"].median())
            ratio = float(slowest["step_seconds"]) / median if median > 0 else float("nan")
            st.subheader(f"Straggler: rank {slowest['rank']} on {slowest['node']}")
            st.write(
                f"Step time {slowest['step_seconds']:.3f} s, {ratio:.2f}× the median of {len(timed)} rank(s) "
                f"({median:.3f} s)."
            )
        st.dataframe(
            mine[["rank", "node", "step_seconds", "collective_wait_seconds", "steps"]].rename(
                columns={
                    "step_seconds": "step time (s)",
                    "collective_wait_seconds": "collective wait per step (s)",
                    "steps": "steps in the window",
                }
            ),
            width="stretch",
            hide_index=True,
        )
        live = ui.sampler(config)
        history = live.series("ranks") if live is not None else None
        if history is not None and not history.empty:
            history = history.assign(job_id=history["job_id"].replace("", NO_JOB))
            history = history[history["job_id"] == job]
            slow = list(mine["rank"].head(JOB_LINES))
            st.caption(
                f"{history['time'].nunique()} look(s) since the console started watching; the {len(slow)} "
                "slowest ranks each get a line, the rest one median line"
            )
            left, right = st.columns(2)
            step = job_lines(history.dropna(subset=["step_seconds"]), "step_seconds", slow)
            wait = job_lines(
                history.dropna(subset=["collective_wait_seconds"]), "collective_wait_seconds", slow
            )
            if not step.empty:
                left.altair_chart(
                    series_chart(step, "step_seconds", "line", "step time (s)"), width="stretch"
                )
            if not wait.empty:
                right.altair_chart(
                    series_chart(wait, "collective_wait_seconds", "line", "collective wait per step (s)"),
                    width="stretch",
                )

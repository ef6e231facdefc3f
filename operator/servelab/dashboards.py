"""Grafana dashboards, generated from code with Grafana's foundation SDK (grafana-foundation-sdk, the types
Grafana 11.6 publishes for its dashboards and panels) into charts/servelab/dashboards/*.json, which the chart
ships as ConfigMaps for Grafana's dashboard sidecar.

    python -m servelab.dashboards            # write them
    python -m servelab.dashboards --check    # fail when a committed file differs (CI, `make check-generated`)

Generation fails when a query names a servelab metric the operator does not define (its registry is
the reference), so a renamed metric cannot leave a dashboard querying nothing. Every dashboard has a
`${datasource}` variable (never a fixed datasource uid). The queries are run against a real Prometheus
that scraped a real operator run in tests/integration/test_dashboards_prometheus.py."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import barchart, stat, statetimeline, table, timeseries, xychart
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import xychart as xym

from servelab.paths import repo_path, write_or_check

OUT_DIR = repo_path("charts", "servelab", "dashboards")
DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
NS = 'namespace=~"$namespace"'
# metrics Prometheus itself adds to every scrape, allowed next to servelab's own
BUILTIN_METRICS = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}

Panel = Builder[dm.Panel]


# ---- queries and transformations ----------------------------------------------------------------------------
def query(expr: str, legend: str = "", ref: str = "A", table_format: bool = False) -> prom.Dataquery:
    """A PromQL target; `table_format` makes it an instant query in table format (one row per series)."""
    q = prom.Dataquery().expr(expr).ref_id(ref).datasource(DS)
    if legend:
        q = q.legend_format(legend)
    if table_format:
        q = q.instant().format(_table_format())
    return q


def _table_format() -> Any:
    from grafana_foundation_sdk.models.prometheus import PromQueryFormat

    return PromQueryFormat.TABLE


def transform(id_: str, options: dict[str, Any]) -> dm.DataTransformerConfig:
    return dm.DataTransformerConfig(id_val=id_, options=options)


def by_concurrency(column: str) -> list[dm.DataTransformerConfig]:
    """One row per concurrency (ordered as numbers), one column per `column` label value: what a bar chart
    of a figure against concurrency needs from an instant table query."""
    row = f"concurrency\\{column}"
    return [
        transform(
            "convertFieldType", {"conversions": [{"targetField": "concurrency", "destinationType": "number"}]}
        ),
        transform(
            "groupingToMatrix", {"columnField": column, "rowField": "concurrency", "valueField": "Value"}
        ),
        transform("sortBy", {"sort": [{"field": row}]}),
        transform("convertFieldType", {"conversions": [{"targetField": row, "destinationType": "string"}]}),
    ]


def merged(renames: dict[str, str], hide: tuple[str, ...] = ("Time",)) -> list[dm.DataTransformerConfig]:
    """Several instant table queries joined on their common labels, value columns renamed."""
    return [
        transform("merge", {}),
        transform("organize", {"excludeByName": dict.fromkeys(hide, True), "renameByName": renames}),
    ]


# ---- panels -----------------------------------------------------------------------------------------------------
def legend(placement: common.LegendPlacement = common.LegendPlacement.BOTTOM) -> cb.VizLegendOptions:
    return (
        cb.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.LIST)
        .placement(placement)
        .show_legend(True)
        .calcs([])
    )


def tooltip() -> cb.VizTooltipOptions:
    return cb.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.DESCENDING)


def concurrency_bars(title: str, expr: str, column: str, unit: str, description: str = "") -> Panel:
    p = (barchart.Panel().title(title).description(description).datasource(DS).unit(unit).span(12).height(8)
         .with_target(query(expr, table_format=True)).x_field(f"concurrency\\{column}")
         .orientation(common.VizOrientation.AUTO).x_tick_label_rotation(0).x_tick_label_max_length(0)
         .stacking(common.StackingMode.NONE).show_value(common.VisibilityMode.AUTO).bar_width(0.9).group_width(0.8)
         .legend(legend()).tooltip(tooltip()).full_highlight(False))  # fmt: skip
    for t in by_concurrency(column):
        p = p.with_transformation(t)
    return p


def series(
    title: str, targets: list[prom.Dataquery], unit: str, span: int = 12, description: str = ""
) -> Panel:
    p = (timeseries.Panel().title(title).description(description).datasource(DS).unit(unit).span(span).height(8)
         .legend(legend()).tooltip(tooltip()))  # fmt: skip
    for t in targets:
        p = p.with_target(t)
    return p


def table_panel(title: str, targets: list[prom.Dataquery], renames: dict[str, str], span: int = 24,
                hide: tuple[str, ...] = ("Time",), description: str = "") -> Panel:  # fmt: skip
    p = (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .span(span)
        .height(8)
        .frame_index(0)
        .show_header(True)
    )
    for target in targets:
        p = p.with_target(target)
    for tf in merged(renames, hide):
        p = p.with_transformation(tf)
    return p


def stat_panel(title: str, expr: str, unit: str = "none", legend_format: str = "", span: int = 6,
               mappings: list[dm.ValueMapping] | None = None, description: str = "") -> Panel:  # fmt: skip
    p = (stat.Panel().title(title).description(description).datasource(DS).unit(unit).span(span).height(5)
         .with_target(query(expr, legend_format)).graph_mode(common.BigValueGraphMode.NONE)
         .color_mode(common.BigValueColorMode.VALUE).justify_mode(common.BigValueJustifyMode.AUTO)
         .text_mode(common.BigValueTextMode.AUTO).wide_layout(True).show_percent_change(False)
         .reduce_options(cb.ReduceDataOptions().values(False).calcs(["lastNotNull"]))
         .percent_change_color_mode(common.PercentChangeColorMode.STANDARD).orientation(common.VizOrientation.AUTO))  # fmt: skip
    if mappings:
        p = p.mappings(mappings)
    return p


def passed_mapping() -> list[dm.ValueMapping]:
    return [dm.ValueMap(options={"1": dm.ValueMappingResult(text="passed", color="green", index=0),
                                 "0": dm.ValueMappingResult(text="failed", color="red", index=1)})]  # fmt: skip


def timeline(
    title: str, expr: str, legend_format: str, mappings: list[dm.ValueMapping], description: str = ""
) -> Panel:
    return (statetimeline.Panel().title(title).description(description).datasource(DS).span(24).height(8)
            .with_target(query(expr, legend_format)).mappings(mappings).show_value(common.VisibilityMode.AUTO)
            .row_height(0.9).legend(legend()).tooltip(tooltip()))  # fmt: skip


def scatter(title: str, x: tuple[str, str], y: tuple[str, str], x_unit: str, description: str = "") -> Panel:
    """An XY chart of two instant table queries merged on their labels: x = the first's value, y = the
    second's (automatic mapping: the first number field is x), one point per series (a QuantJob output)."""
    (xexpr, xname), (yexpr, yname) = x, y
    p = (xychart.Panel().title(title).description(description).datasource(DS).span(12).height(9).unit(x_unit)
         .with_target(query(xexpr, ref="A", table_format=True)).with_target(query(yexpr, ref="B", table_format=True))
         .mapping(xym.SeriesMapping.AUTO).series([]).legend(legend()).tooltip(tooltip()).show(xym.XYShowMode.POINTS)
         .point_size(xychart.XychartFieldConfigPointSize().fixed(8)))  # fmt: skip
    for t in merged({"Value #A": xname, "Value #B": yname}):
        p = p.with_transformation(t)
    return p


# ---- variables ----------------------------------------------------------------------------------------------------
def datasource_var() -> db.DatasourceVariable:
    return db.DatasourceVariable("datasource").label("Data source").type("prometheus")


def label_var(name: str, label: str, metric: str, title: str, multi: bool = True) -> db.QueryVariable:
    v = (db.QueryVariable(name).label(title).datasource(DS).query(f"label_values({metric}, {label})")
         .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC))  # fmt: skip
    if multi:
        v = v.multi(True).include_all(True).all_value(".*")
    return v


def dashboard(uid: str, title: str, description: str, variables: list[Builder[dm.VariableModel]],
              rows: list[tuple[str, list[Panel]]]) -> db.Dashboard:  # fmt: skip
    d = (db.Dashboard(title).uid(uid).description(description).tags(["servelab"]).editable().time("now-24h", "now")
         .refresh("1m").timezone("browser").tooltip(dm.DashboardCursorSync.CROSSHAIR))  # fmt: skip
    for v in variables:
        d = d.with_variable(v)
    for row, panels in rows:
        d = d.with_row(db.Row(row))
        for p in panels:
            d = d.with_panel(p)
    return d


# ---- the dashboards -------------------------------------------------------------------------------------------------
def benchmark() -> db.Dashboard:
    sel = f'{NS}, name="$benchmark"'
    return dashboard(
        "servelab-benchmark", "servelab / Benchmark sweep",
        "One ServeBenchmark's load sweep: throughput, latency, success and goodput against concurrency (the last "
        "run's values), its verdict and evaluation scores.",
        [datasource_var(), label_var("namespace", "namespace", "servelab_benchmark_info", "Namespace"),
         label_var("benchmark", "name", f"servelab_benchmark_info{{{NS}}}", "ServeBenchmark", multi=False)],
        [("Sweep", [
            concurrency_bars("Output tokens/s by concurrency", f"servelab_load_output_tokens_per_second{{{sel}}}",
                             "name", "short"),
            concurrency_bars("Time to first token by concurrency (mean, p99)", f"servelab_load_ttft_seconds{{{sel}}}",
                             "statistic", "s"),
            concurrency_bars("Time per output token by concurrency (mean, p99)", f"servelab_load_tpot_seconds{{{sel}}}",
                             "statistic", "s"),
            concurrency_bars("Success ratio by concurrency", f"servelab_load_success_ratio{{{sel}}}", "name",
                             "percentunit"),
            concurrency_bars("Goodput (output tokens/s meeting the SLO) by concurrency",
                             f"servelab_goodput_output_tokens_per_second{{{sel}}}", "name", "short",
                             "Output tokens/s of the requests that met every per-request bound of spec.slo."),
            concurrency_bars("SLO attainment by concurrency", f"servelab_slo_attainment_ratio{{{sel}}}", "name",
                             "percentunit"),
          ]),
         ("Verdict", [
            stat_panel("Verdict", f'servelab_verdict_passed{{kind="ServeBenchmark", {sel}}}', legend_format="{{reason}}",
                       mappings=passed_mapping()),
            stat_panel("Max concurrency under SLO", f"servelab_max_concurrency_under_slo{{{sel}}}",
                       description="Interpolated between measured points (status.verdict.slo)."),
            table_panel("Points", [
                query(f"servelab_load_output_tokens_per_second{{{sel}}}", ref="A", table_format=True),
                query(f'servelab_load_ttft_seconds{{statistic="p99", {sel}}}', ref="B", table_format=True),
                query(f'servelab_load_tpot_seconds{{statistic="p99", {sel}}}', ref="C", table_format=True),
                query(f"servelab_load_success_ratio{{{sel}}}", ref="D", table_format=True),
             ], {"Value #A": "output tok/s", "Value #B": "TTFT p99 (s)", "Value #C": "TPOT p99 (s)",
                 "Value #D": "success"}, span=12, hide=("Time", "statistic", "__name__")),
          ]),
         ("History and scores", [
            series("Output tokens/s over time, by concurrency",
                   [query(f"servelab_load_output_tokens_per_second{{{sel}}}", "c={{concurrency}}")], "short"),
            table_panel("Evaluation scores", [query(f"servelab_eval_score{{{sel}}}", table_format=True)],
                        {"Value": "score"}, span=12),
          ])],
    )  # fmt: skip


def comparison() -> db.Dashboard:
    same = 'on(namespace, name) group_left() servelab_benchmark_info{workload="$workload"}'
    sel = f'{NS}, name=~"$benchmark"'
    return dashboard(
        "servelab-comparison", "servelab / Compare models, quantizations and engines",
        "ServeBenchmarks of one workload side by side (runs of other workloads are left out: their numbers do not "
        "compare), one bar per run at each concurrency.",
        [datasource_var(), label_var("namespace", "namespace", "servelab_benchmark_info", "Namespace"),
         label_var("workload", "workload", f"servelab_benchmark_info{{{NS}}}", "Workload", multi=False),
         label_var("benchmark", "name", f'servelab_benchmark_info{{{NS}, workload="$workload"}}', "ServeBenchmarks")],
        [("Runs", [
            table_panel("Runs of this workload", [query(f'servelab_benchmark_info{{{sel}, workload="$workload"}}',
                                                        table_format=True)], {},
                        hide=("Time", "Value", "__name__", "workload")),
          ]),
         ("Against concurrency", [
            concurrency_bars("Output tokens/s by concurrency",
                             f"servelab_load_output_tokens_per_second{{{sel}}} * {same}", "name", "short"),
            concurrency_bars("Time to first token p99 by concurrency",
                             f'servelab_load_ttft_seconds{{statistic="p99", {sel}}} * {same}', "name", "s"),
            concurrency_bars("Time per output token p99 by concurrency",
                             f'servelab_load_tpot_seconds{{statistic="p99", {sel}}} * {same}', "name", "s"),
            concurrency_bars("Goodput output tokens/s by concurrency",
                             f"servelab_goodput_output_tokens_per_second{{{sel}}} * {same}", "name", "short"),
            concurrency_bars("Success ratio by concurrency", f"servelab_load_success_ratio{{{sel}}} * {same}", "name",
                             "percentunit"),
          ]),
         ("Headlines", [
            table_panel("Max concurrency under SLO and peak throughput", [
                query(f"servelab_max_concurrency_under_slo{{{sel}}} * {same}", ref="A", table_format=True),
                query(f"max by (namespace, name, engine, model, quantization) "
                      f"(servelab_load_output_tokens_per_second{{{sel}}} * {same})", ref="B", table_format=True),
             ], {"Value #A": "max concurrency under SLO", "Value #B": "peak output tok/s"}, span=12),
            table_panel("Evaluation scores", [query(f"servelab_eval_score{{{sel}}} * {same}", table_format=True)],
                        {"Value": "score"}, span=12),
            series("Peak output tokens/s over time, per run",
                   [query(f"max by (name, engine, quantization) (servelab_load_output_tokens_per_second{{{sel}}} "
                          f"* {same})", "{{name}} ({{engine}} {{quantization}})")], "short", span=24),
          ])],
    )  # fmt: skip


def quantization() -> db.Dashboard:
    sel = f'{NS}, name=~"$quantjob"'
    base = "on(namespace, name, method, variant) servelab_quant_base_info"
    return dashboard(
        "servelab-quantization", "servelab / Quantization quality",
        "QuantJob outputs: size, perplexity, KL divergence and task scores, against size and against the "
        "unquantized base (F16 for GGUF, BASE for llm-compressor).",
        [datasource_var(), label_var("namespace", "namespace", "servelab_quant_size_bytes", "Namespace"),
         label_var("quantjob", "name", f"servelab_quant_size_bytes{{{NS}}}", "QuantJobs")],
        [("Outputs", [
            table_panel("Outputs: size, perplexity, KL divergence, time", [
                query(f"servelab_quant_size_bytes{{{sel}}}", ref="A", table_format=True),
                query(f"servelab_quant_perplexity{{{sel}}}", ref="B", table_format=True),
                query(f"servelab_quant_kl_divergence{{{sel}}}", ref="C", table_format=True),
                query(f"servelab_quant_duration_seconds{{{sel}}}", ref="D", table_format=True),
             ], {"Value #A": "size (bytes)", "Value #B": "perplexity", "Value #C": "mean KLD",
                 "Value #D": "time (s)"}),
            scatter("Perplexity against size", (f"servelab_quant_size_bytes{{{sel}}}", "size"),
                    (f"servelab_quant_perplexity{{{sel}}}", "perplexity"), "bytes"),
            scatter("KL divergence from the base against size", (f"servelab_quant_size_bytes{{{sel}}}", "size"),
                    (f"servelab_quant_kl_divergence{{{sel}}}", "mean KLD"), "bytes"),
          ]),
         ("Against the base", [
            table_panel("Perplexity and size against the base (%)", [
                query(f"100 * (servelab_quant_perplexity{{{sel}}} / on(namespace, name) group_left() "
                      f"(servelab_quant_perplexity{{{sel}}} * {base}) - 1)", ref="A", table_format=True),
                query(f"100 * servelab_quant_size_bytes{{{sel}}} / on(namespace, name) group_left() "
                      f"(servelab_quant_size_bytes{{{sel}}} * {base})", ref="B", table_format=True),
             ], {"Value #A": "perplexity rise (%)", "Value #B": "size (% of base)"}, span=12),
            table_panel("Task scores against the base (points)", [
                query(f"servelab_quant_score{{{sel}}} - on(namespace, name, dataset, metric, subset) group_left() "
                      f"(servelab_quant_score{{{sel}}} * on(namespace, name, method, variant) group_left() "
                      "servelab_quant_base_info)", table_format=True),
             ], {"Value": "score - base score"}, span=12),
            table_panel("Task scores", [query(f"servelab_quant_score{{{sel}}}", table_format=True)], {"Value": "score"}),
          ])],
    )  # fmt: skip


def verdicts() -> db.Dashboard:
    sel = NS
    return dashboard(
        "servelab-verdicts", "servelab / Verdicts and gates",
        "Every resource's gate: passed or failed with its reason, the history of verdicts, failed runs, and the "
        "SLO headline of each ServeBenchmark.",
        [datasource_var(), label_var("namespace", "namespace", '{__name__=~"servelab_verdict_passed|servelab_run_failed"}', "Namespace")],
        [("Now", [
            stat_panel("Passed", f"sum(servelab_verdict_passed{{{sel}}})"),
            stat_panel("Gate failed", f"sum(1 - servelab_verdict_passed{{{sel}}})"),
            stat_panel("Runs failed", f"sum(servelab_run_failed{{{sel}}})"),
            stat_panel("Max concurrency under SLO", f"servelab_max_concurrency_under_slo{{{sel}}}", legend_format="{{name}}"),
            table_panel("Verdicts", [query(f"servelab_verdict_passed{{{sel}}}", table_format=True)],
                        {"Value": "passed"}, span=12, hide=("Time", "__name__")),
            table_panel("Failed runs", [query(f"servelab_run_failed{{{sel}}}", table_format=True)], {},
                        span=12, hide=("Time", "__name__", "Value")),
          ]),
         ("History", [
            timeline("Gate history", f"servelab_verdict_passed{{{sel}}}", "{{kind}} {{namespace}}/{{name}}",
                     passed_mapping()),
            timeline("Failed runs over time", f"servelab_run_failed{{{sel}}}", "{{kind}} {{namespace}}/{{name}}: "
                     "{{reason}}", [dm.ValueMap(options={"1": dm.ValueMappingResult(text="failed", color="red")})]),
            series("SLO attainment by point", [query(f"servelab_slo_attainment_ratio{{{sel}}}",
                                                     "{{name}} c={{concurrency}}")], "percentunit", span=24),
          ])],
    )  # fmt: skip


def operator() -> db.Dashboard:
    job = 'job=~"$job"'
    rate = "[$__rate_interval]"
    return dashboard(
        "servelab-operator", "servelab / Operator health",
        "The operator itself: reconciles by kind and outcome, errors, reconcile durations, resources by phase.",
        [datasource_var(), label_var("job", "job", "servelab_reconciles_total", "Scrape job")],
        [("Operator", [
            stat_panel("Up", f"up{{{job}}}", legend_format="{{instance}}",
                       mappings=[dm.ValueMap(options={"1": dm.ValueMappingResult(text="up", color="green"),
                                                      "0": dm.ValueMappingResult(text="down", color="red")})]),
            stat_panel("Resources failed", f'sum(servelab_resources{{{job}, phase="Failed"}}) or vector(0)'),
            stat_panel("Reconciles (last hour)", f"sum(increase(servelab_reconciles_total{{{job}}}[1h]))"),
            stat_panel("Reconcile errors (last hour)",
                       f'sum(increase(servelab_reconciles_total{{{job}, outcome="error"}}[1h])) or vector(0)'),
            series("Reconciles per second by kind and outcome",
                   [query(f"sum by (kind, outcome) (rate(servelab_reconciles_total{{{job}}}{rate}))",
                          "{{kind}} {{outcome}}")], "reqps"),
            series("Reconcile errors per second", [query(
                f'sum by (kind) (rate(servelab_reconciles_total{{{job}, outcome="error"}}{rate})) or '
                f"sum by (kind) (rate(servelab_reconciles_total{{{job}}}{rate})) * 0", "{{kind}}")], "reqps"),
            series("Reconcile duration", [
                query(f"histogram_quantile(0.99, sum by (le, kind) (rate(servelab_reconcile_duration_seconds_bucket"
                      f"{{{job}}}{rate})))", "p99 {{kind}}", ref="A"),
                query(f"histogram_quantile(0.5, sum by (le, kind) (rate(servelab_reconcile_duration_seconds_bucket"
                      f"{{{job}}}{rate})))", "p50 {{kind}}", ref="B"),
                query(f"sum by (kind) (rate(servelab_reconcile_duration_seconds_sum{{{job}}}{rate})) / "
                      f"sum by (kind) (rate(servelab_reconcile_duration_seconds_count{{{job}}}{rate}))",
                      "mean {{kind}}", ref="C"),
             ], "s"),
            series("Resources by kind and phase", [query(f"sum by (kind, phase) (servelab_resources{{{job}}})",
                                                         "{{kind}} {{phase}}")], "short"),
          ])],
    )  # fmt: skip


DASHBOARDS: dict[str, Callable[[], db.Dashboard]] = {
    "servelab-benchmark": benchmark,
    "servelab-comparison": comparison,
    "servelab-quantization": quantization,
    "servelab-verdicts": verdicts,
    "servelab-operator": operator,
}


# ---- generation -------------------------------------------------------------------------------------------------------
def known_metrics() -> set[str]:
    """Every sample name the operator exposes (counters' _total, histograms' _bucket/_sum/_count)."""
    from servelab.controller import metrics

    names = set(BUILTIN_METRICS)
    for collector in list(metrics.REGISTRY._collector_to_names):
        names |= set(metrics.REGISTRY._collector_to_names[collector])
    return names


def queries(model: dict[str, Any]) -> list[str]:
    """Every PromQL expression of a dashboard: panel targets and variable queries."""
    out = [t["expr"] for p in model.get("panels", []) for t in p.get("targets", []) if "expr" in t]
    for v in model.get("templating", {}).get("list", []):
        q = v.get("query")
        if v.get("type") == "query" and isinstance(q, str):
            out.append(q)
    return out


def unknown_metrics(model: dict[str, Any]) -> set[str]:
    known = known_metrics()
    named = {m for expr in queries(model) for m in re.findall(r"\b(servelab_[a-z_]+|up)\b", expr)}
    return named - known


def render(name: str) -> dict[str, Any]:
    model: dict[str, Any] = json.loads(json.dumps(DASHBOARDS[name]().build(), cls=JSONEncoder))
    model["annotations"] = model.get("annotations") or {"list": []}
    for i, panel in enumerate(model.get("panels", []), start=1):
        panel["id"] = i  # stable ids: Grafana links and the tests name panels by them
        if not panel.get("description"):
            panel.pop("description", None)
    missing = unknown_metrics(model)
    if missing:
        raise ValueError(f"dashboard {name} queries metrics the operator does not define: {sorted(missing)}")
    return model


def outputs() -> dict[Path, str]:
    return {
        OUT_DIR / f"{name}.json": json.dumps(render(name), indent=2, sort_keys=True) + "\n"
        for name in DASHBOARDS
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m servelab.dashboards", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--check", action="store_true", help="fail when a generated file is out of date")
    args = parser.parse_args(argv)
    changed = write_or_check(outputs(), args.check)
    stale = changed if args.check else []  # without --check they were just written
    known = {OUT_DIR / f"{n}.json" for n in DASHBOARDS}
    extra = [p for p in sorted(OUT_DIR.glob("*.json")) if p not in known]
    if extra:
        print(f"not generated (remove them): {', '.join(map(str, extra))}", file=sys.stderr)
    if stale or extra:
        print(f"{len(stale) + len(extra)} dashboard file(s) out of date; run `python -m servelab.dashboards`",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

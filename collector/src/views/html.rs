//! The views as HTML fragments, shared by the live page and `hotspan report --html`: the span
//! names table, a name's aggregate and differential flame graphs with its latency breakdown,
//! the breakdown chart of every name, the label breakdown with its filter, and the notes that
//! explain the columns and the CPU outside spans. Links go through [`Links`], so the page
//! links to its URLs and the report to its own sections.

use std::fmt::Write;

use super::agg::{NameAgg, NameKey, Views, OVER_CAP};
use super::breakdown::{bar_html, legend_html, Segment};
use super::diff::{slow_fast, MIN_SPANS};
use crate::report::flame::{self, duration, escape, leaf_frames};

const FLAME_WIDTH: usize = 1200;
/// Label sets in the table and chart.
const LABEL_ROWS: usize = 200;

/// Extra CSS for the views (on top of the report's).
pub const VIEWS_CSS: &str = ".bar{display:flex;height:14px;min-width:2px;background:#f4f4f4;overflow:hidden}\
.seg{display:block;height:100%}.legend{font-size:.85em;margin:.3em 0}.legend span{margin-right:1.2em;white-space:nowrap}\
.legend i{display:inline-block;width:.8em;height:.8em;margin-right:.3em;vertical-align:middle}\
.chart-row{display:grid;grid-template-columns:20em 1fr 7em;align-items:center;gap:.6em;margin:2px 0}\
.chart-row .name{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}.lbar{height:12px;background:#e4572e;min-width:1px}\
.wf-row{display:grid;grid-template-columns:24em 1fr 6em;align-items:center;border-bottom:1px solid #f0f0f0;font-size:.9em}\
.wf-row .name{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}.wf-track{position:relative;height:16px}\
.wf-track>div{position:absolute;top:1px}.wf-track .bar{width:100%}.hl{background:#fff6d5}.note{background:#f6f8fa;padding:.6em .9em;border-left:3px solid #aac;max-width:60em}\
td .bar{width:14em}";

/// Where the views link to.
pub trait Links {
    /// A span name's views.
    fn name(&self, key: &NameKey) -> Option<String>;
    /// A service's views (every span name of it).
    fn service(&self, service: &str) -> Option<String>;
    /// The waterfall of a trace, showing one span of it.
    fn trace(&self, trace_id: &str, span_id: &str) -> Option<String>;
    /// One span's own page.
    fn span(&self, span_id: &str) -> Option<String>;
}

/// `<a href>` when there is a link, plain text otherwise.
pub fn link(out: &mut String, href: Option<String>, text: &str, attrs: &str) {
    match href {
        Some(h) => {
            let _ = write!(out, "<a href=\"{}\" {attrs}>{}</a>", escape(&h), escape(text));
        }
        None => out.push_str(&escape(text)),
    }
}

fn pct(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        100.0 * part / whole
    } else {
        0.0
    }
}

/// Names, most CPU first (then most spans).
pub fn sorted_names(views: &Views) -> Vec<(&NameKey, &NameAgg)> {
    let mut names: Vec<_> = views.names.iter().collect();
    names.sort_by(|a, b| {
        b.1.weight
            .cmp(&a.1.weight)
            .then(b.1.count.cmp(&a.1.count))
            .then_with(|| a.0.cmp(b.0))
    });
    names
}

/// What the CPU columns mean.
pub const COLUMNS_EXPLAINED: &str = "CPU UTIL is the mean, over a name's spans, of each span's own CPU time divided by its \
duration: how busy one span kept a CPU (above 100% with parallel goroutines, or on spans shorter than one 10 ms sample). \
CPU% is the name's share of all the CPU joined to spans here: where the CPU went. A name can have a high CPU UTIL and a \
small CPU%, or the reverse. CPU/SPAN is the name's CPU divided by its spans.";

/// The note on CPU that no span holds. `samples` is the collector's own count of unjoined
/// and joined samples, when the page can read it.
pub fn outside_spans(out: &mut String, samples: Option<(u64, u64)>) {
    out.push_str("<h2 id=\"outside\">Outside spans</h2><p class=\"note\">");
    match samples {
        Some((unjoined, joined)) => {
            let _ = write!(
                out,
                "{unjoined} CPU samples ({:.1}% of {}) found no span (<code>hotspan_spanprofile_unjoined_samples</code>): \
                 goroutines that run outside any span (background loops, the runtime's own work, GC workers) or whose \
                 samples carry no span id. Their CPU is in the profiles but on no span here.",
                pct(unjoined as f64, (unjoined + joined) as f64),
                unjoined + joined
            );
        }
        None => out.push_str(
            "CPU that ran outside any span is not shown here: background goroutines, the runtime's own work and GC \
             workers carry no span id, so the join cannot put their samples on a span. It counts them as \
             <code>hotspan_spanprofile_unjoined_samples</code> in the collector's metrics.",
        ),
    }
    out.push_str("</p>");
}

/// The table of span names: count, p50/p90/p99, CPU per span, CPU UTIL, CPU%, and where the
/// mean span's time goes.
pub fn names_table(out: &mut String, views: &Views, links: &dyn Links) {
    let _ = write!(
        out,
        "<table id=\"names\"><tr><th>service</th><th>span name</th><th>count</th><th>p50</th><th>p90</th><th>p99</th>\
         <th title=\"CPU joined to the name's spans, divided by its spans\">CPU/span</th>\
         <th title=\"{}\">CPU util</th><th title=\"{}\">CPU%</th><th>where the mean span's time goes</th></tr>",
        escape("mean of each span's own CPU / its duration"),
        escape("share of all CPU joined to spans")
    );
    for (key, n) in sorted_names(views) {
        let _ = write!(
            out,
            "<tr class=\"name-row\" data-row-name=\"{}\"><td>",
            escape(&key.1)
        );
        link(out, links.service(&key.0), &key.0, "");
        out.push_str("</td><td>");
        link(out, links.name(key), &key.1, "class=\"name-link\"");
        let _ = write!(
            out,
            "</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{:.1}%</td><td class=\"n\">{:.1}%</td><td>",
            n.count,
            duration(n.durations.percentile(0.5)),
            duration(n.durations.percentile(0.9)),
            duration(n.durations.percentile(0.99)),
            duration(n.cpu_ns / n.count.max(1)),
            pct(n.utilization_sum, n.count as f64),
            pct(n.weight as f64, views.total_weight as f64),
        );
        let segs = n.parts.mean_segments();
        bar_html(out, &segs, "", &bar_title("mean span", &segs));
        out.push_str("</td></tr>");
    }
    out.push_str("</table>");
    let _ = write!(out, "<p class=\"muted\">{}</p>", escape(COLUMNS_EXPLAINED));
}

fn bar_title(what: &str, segs: &[Segment]) -> String {
    let total: u64 = segs.iter().map(|s| s.ns).sum();
    let parts: Vec<String> = segs
        .iter()
        .map(|s| format!("{} {}", s.label, duration(s.ns)))
        .collect();
    format!("{what} {}: {}", duration(total), parts.join(", "))
}

/// The latency breakdown per span name: the mean span's parts as stacked bars, all on one
/// scale (the longest mean span fills the width).
pub fn breakdown_chart(out: &mut String, views: &Views, links: &dyn Links) {
    out.push_str("<div id=\"breakdown\">");
    let names = sorted_names(views);
    let rows: Vec<(&NameKey, Vec<Segment>)> =
        names.iter().map(|(k, n)| (*k, n.parts.mean_segments())).collect();
    let longest = rows
        .iter()
        .map(|(_, s)| s.iter().map(|s| s.ns).sum::<u64>())
        .max()
        .unwrap_or(0);
    let mut all = Vec::new();
    for (key, segs) in &rows {
        let total: u64 = segs.iter().map(|s| s.ns).sum();
        let _ = write!(
            out,
            "<div class=\"chart-row breakdown-row\" data-row-name=\"{}\"><span class=\"name\">",
            escape(&key.1)
        );
        link(out, links.name(key), &format!("{} {}", key.0, key.1), "");
        let _ = write!(
            out,
            "</span><div style=\"width:{:.2}%\">",
            pct(total as f64, longest as f64).max(0.3)
        );
        bar_html(out, segs, "", &bar_title(&format!("{}: mean span", key.1), segs));
        let _ = write!(out, "</div><span class=\"n\">{}</span></div>", duration(total));
        all.extend(segs.iter().cloned());
    }
    legend_html(out, &all);
    out.push_str("</div>");
    let with: u64 = names.iter().map(|(_, n)| n.parts.with_breakdown).sum();
    if with == 0 {
        out.push_str(
            "<p class=\"muted\">These spans carry CPU only (no <code>profile.wait_ns</code>, GC pause or throttling \
             attributes): the rest of their time is unexplained or in child spans.</p>",
        );
    }
}

/// One name's (or a whole service's) views: numbers, breakdown, aggregate flame graph, slow
/// versus fast.
pub fn name_detail(out: &mut String, title: &str, n: &NameAgg) {
    let _ = write!(
        out,
        "<p>{} spans ({} with samples), p50 {}, p90 {}, p99 {}, max {}; CPU {} in all, {} per span ({} samples)</p>",
        n.count,
        n.with_samples,
        duration(n.durations.percentile(0.5)),
        duration(n.durations.percentile(0.9)),
        duration(n.durations.percentile(0.99)),
        duration(n.durations.max()),
        duration(n.cpu_ns),
        duration(n.cpu_ns / n.count.max(1)),
        n.samples
    );
    out.push_str("<h3>Where the time goes (mean span)</h3>");
    let segs = n.parts.mean_segments();
    bar_html(
        out,
        &segs,
        "data-view=\"name-breakdown\"",
        &bar_title("mean span", &segs),
    );
    legend_html(out, &segs);
    if n.parts.scaled > 0 {
        let _ = write!(
            out,
            "<p class=\"muted\">{} span(s) had estimates adding up to more than their own time; they were scaled down to fit.</p>",
            n.parts.scaled
        );
    }
    out.push_str(
        "<h3>Flame graph: every sample on these spans</h3><div class=\"flame\" data-view=\"aggregate\">",
    );
    let mut stacks: Vec<(&str, u64)> = n.stacks.iter().map(|(s, w)| (&**s, *w)).collect();
    stacks.sort();
    let unit = if n.cpu_ns > 0 { "ns" } else { "samples" };
    match flame::svg(title, unit, &stacks, FLAME_WIDTH) {
        Some(svg) => out.push_str(&svg),
        None => out.push_str("<p class=\"muted\">no samples joined to these spans</p>"),
    }
    out.push_str("</div>");
    if n.stacks_over_cap > 0 {
        let _ = write!(
            out,
            "<p class=\"muted\">{} of the weight went to <code>{}</code>: more distinct stacks than kept.</p>",
            duration(n.stacks_over_cap),
            escape(OVER_CAP)
        );
    }
    slow_versus_fast(out, title, n);
}

fn slow_versus_fast(out: &mut String, title: &str, n: &NameAgg) {
    out.push_str("<h3>Slow versus fast</h3><div class=\"diff\" data-view=\"differential\">");
    let Some(sf) = slow_fast(&n.kept_merged) else {
        let _ = write!(
            out,
            "<p class=\"muted\">too few spans ({}) to compare; at least {MIN_SPANS} are needed.</p></div>",
            n.kept_merged.len()
        );
        return;
    };
    let _ = write!(
        out,
        "<p class=\"diff-summary\">The slowest tenth ({:.0} spans, from {}; mean {}) against the middle (40th to 60th \
         percentile: {:.0} spans, {} to {}; mean {}), CPU per span. ",
        sf.slow_spans,
        duration(sf.slow_from_ns),
        duration(sf.slow_mean_ns as u64),
        sf.band_spans,
        duration(sf.band_ns.0),
        duration(sf.band_ns.1),
        duration(sf.band_mean_ns as u64),
    );
    match sf.grew() {
        Some((f, b, s)) => {
            let _ = write!(
                out,
                "Grew most: <code class=\"grew\">{}</code>, {} more CPU per span ({} &rarr; {}).",
                escape(f),
                duration((s - b) as u64),
                duration(*b as u64),
                duration(*s as u64)
            );
        }
        None => out.push_str("No function takes more CPU per span in the slow spans."),
    }
    if let Some((f, b, s)) = sf.shrank() {
        let _ = write!(
            out,
            " Shrank most: <code class=\"shrank\">{}</code> ({} &rarr; {}).",
            escape(f),
            duration(*b as u64),
            duration(*s as u64)
        );
    }
    out.push_str("</p><p class=\"muted\">Frames are as wide as in the slow spans; red grew against the middle spans, blue shrank; hover for the change.</p>");
    let t = format!("{title}: slowest 10% vs 40th-60th percentile, CPU per span");
    match flame::differential_svg(&t, "ns per span", &sf.band_stacks, &sf.slow_stacks, FLAME_WIDTH) {
        Some(svg) => out.push_str(&svg),
        None => out.push_str("<p class=\"muted\">the slow spans have no samples</p>"),
    }
    out.push_str("</div>");
}

/// The CPU per label set, as a table and a bar chart, with a text box that filters both.
pub fn labels_section(out: &mut String, views: &Views) {
    let mut groups: Vec<_> = views.labels.iter().collect();
    groups.sort_by(|a, b| b.1.weight.cmp(&a.1.weight).then_with(|| a.0.cmp(b.0)));
    let total = views.total_weight as f64;
    out.push_str(
        "<div id=\"labels\"><p><input id=\"label-filter\" type=\"search\" placeholder=\"filter labels, e.g. domain=payment\" size=\"40\"></p>\
         <table id=\"label-table\"><tr><th>labels</th><th>spans</th><th>CPU</th><th>CPU share</th><th>mean duration</th><th>top function</th></tr>",
    );
    let mut chart = String::from("<div id=\"label-chart\">");
    let top_share = groups
        .first()
        .map(|g| pct(g.1.weight as f64, total))
        .unwrap_or(0.0);
    for (labels, g) in groups.iter().take(LABEL_ROWS) {
        let share = pct(g.weight as f64, total);
        let top = g
            .functions
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1).then_with(|| b.0.cmp(a.0)))
            .map(|(f, _)| f.as_str())
            .unwrap_or("");
        let _ = write!(
            out,
            "<tr class=\"label-row\" data-labels=\"{l}\"><td>{l}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{share:.1}%</td><td class=\"n\">{}</td><td><code>{}</code></td></tr>",
            g.spans,
            duration(g.weight),
            duration(g.duration_sum / g.spans.max(1)),
            escape(top),
            l = escape(labels),
        );
        let _ = write!(
            chart,
            "<div class=\"chart-row label-row\" data-labels=\"{l}\"><span class=\"name\">{l}</span><div><div class=\"lbar\" style=\"width:{:.2}%\" title=\"{share:.1}% of CPU\"></div></div><span class=\"n\">{share:.1}%</span></div>",
            pct(share, top_share),
            l = escape(labels),
        );
    }
    out.push_str("</table>");
    out.push_str(&chart);
    out.push_str("</div></div>");
    if views.dropped.label_spans > 0 {
        let _ = write!(
            out,
            "<p class=\"muted\">{} spans of further label sets were counted but not listed.</p>",
            views.dropped.label_spans
        );
    }
    // Plain script: hide the rows and bars whose labels do not contain the text; the text
    // survives the live page's reloads.
    out.push_str(
        "<script>(function(){var f=document.getElementById('label-filter');if(!f)return;\
         try{f.value=sessionStorage.getItem('hotspan.labels')||''}catch(e){}\
         function apply(){var q=f.value.toLowerCase();try{sessionStorage.setItem('hotspan.labels',f.value)}catch(e){}\
         document.querySelectorAll('#labels .label-row').forEach(function(r){\
         r.style.display=r.getAttribute('data-labels').toLowerCase().indexOf(q)<0?'none':''})}\
         f.addEventListener('input',apply);apply();})();</script>",
    );
}

/// The bounds' note: what was counted but not drawn.
pub fn dropped_note(out: &mut String, views: &Views) {
    let d = views.dropped;
    if d.name_spans > 0 || d.stacks > 0 {
        let _ = write!(
            out,
            "<p class=\"muted\">Bounds: {} spans of names past the {} kept were counted only; {} of stack weight went to <code>{}</code>.</p>",
            d.name_spans,
            views.limits.names,
            d.stacks,
            escape(OVER_CAP)
        );
    }
}

/// The hot path's last frames, for titles.
pub fn short_path(stack: &str) -> String {
    leaf_frames(stack, 8)
}

using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Cfn.Coordination.Metrics;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Resilience;
using Cfn.Coordination.Swarms;
using Prometheus;

namespace Cfn.Tests.Deploy;

/// <summary>
/// Issue 5 item 5: <c>deploy/grafana/blocking-coordination.json</c> has the runbook's uid, five panels and variables,
/// every query is filtered by <c>$swarm_id</c>/<c>$coordinator_id</c> where its metric has those labels, and every
/// metric name in every query is one cfn exports (read from the real metric classes) or the rules file records.
/// promtool parses every query (with the Grafana variables substituted) as a rule expression.
/// </summary>
public sealed partial class DashboardTests
{
    private static readonly string[] Aggregations =
        ["sum", "min", "max", "avg", "count", "group", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values"];

    private static readonly string[] LabelListKeywords = ["by", "without", "on", "ignoring", "group_left", "group_right"];

    private static readonly string[] OtherKeywords = ["and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"];

    private static readonly Lazy<JsonDocument> Dashboard = new(() =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(RepoRoot(), "deploy", "grafana", "blocking-coordination.json"))));

    private static JsonElement Root => Dashboard.Value.RootElement;

    [Fact]
    public void Dashboard_IsTheBareImportObject_WithTheRunbookUid()
    {
        Assert.False(Root.TryGetProperty("dashboard", out _), "the file is the bare dashboard object, not the API's {\"dashboard\": …} wrapper");
        Assert.Equal("blocking-coordination", Root.GetProperty("uid").GetString());
        Assert.False(string.IsNullOrWhiteSpace(Root.GetProperty("title").GetString()));
        Assert.Contains("blocking-coordination", Root.GetProperty("tags").EnumerateArray().Select(t => t.GetString()));
        Assert.False(string.IsNullOrWhiteSpace(Root.GetProperty("refresh").GetString()));
        // No numeric id: Grafana assigns one on import, and a fixed one would overwrite another dashboard.
        Assert.True(!Root.TryGetProperty("id", out var id) || id.ValueKind == JsonValueKind.Null);
        var ids = Panels().Select(p => p.GetProperty("id").GetInt32()).ToList();
        Assert.Equal(ids.Count, ids.Distinct().Count());
    }

    [Fact]
    public void Dashboard_HasTheRunbooksFivePanels()
    {
        var active = Panel("Active Coordinators");
        Assert.Equal("gauge", active.GetProperty("type").GetString());
        Assert.Contains("blocking_coordinators_active", Assert.Single(Exprs(active)), StringComparison.Ordinal);
        // Green < 5, yellow 5–10, red > 10 (counts are whole numbers).
        var steps = active.GetProperty("fieldConfig").GetProperty("defaults").GetProperty("thresholds").GetProperty("steps").EnumerateArray()
            .Select(s => (Color: s.GetProperty("color").GetString()!, Value: s.GetProperty("value").ValueKind == JsonValueKind.Null ? double.NegativeInfinity : s.GetProperty("value").GetDouble()))
            .ToList();
        string ColorOf(double value) => steps.Last(s => value >= s.Value).Color;
        Assert.Equal("green", ColorOf(0));
        Assert.Equal("green", ColorOf(4));
        Assert.Equal("yellow", ColorOf(5));
        Assert.Equal("yellow", ColorOf(10));
        Assert.Equal("red", ColorOf(11));
        Assert.Equal("red", ColorOf(50));

        var duration = Panel("Blocking Duration P95/P99");
        Assert.Equal("timeseries", duration.GetProperty("type").GetString());
        var durationExprs = Exprs(duration);
        Assert.Contains(durationExprs, e => e.StartsWith("histogram_quantile(0.95,", StringComparison.Ordinal) && e.Contains("blocking_duration_seconds_bucket", StringComparison.Ordinal));
        Assert.Contains(durationExprs, e => e.StartsWith("histogram_quantile(0.99,", StringComparison.Ordinal) && e.Contains("blocking_duration_seconds_bucket", StringComparison.Ordinal));
        Assert.All(durationExprs, e => Assert.Contains("rate(", e, StringComparison.Ordinal));

        var latency = Panel("Signal Delivery Latency");
        Assert.Equal("heatmap", latency.GetProperty("type").GetString());
        var latencyTarget = Assert.Single(latency.GetProperty("targets").EnumerateArray());
        Assert.Contains("signal_delivery_latency_seconds_bucket", latencyTarget.GetProperty("expr").GetString(), StringComparison.Ordinal);
        Assert.Equal("heatmap", latencyTarget.GetProperty("format").GetString());
        Assert.Equal("{{le}}", latencyTarget.GetProperty("legendFormat").GetString());

        var heartbeats = Panel("Heartbeat Failure Rate");
        Assert.Equal("timeseries", heartbeats.GetProperty("type").GetString());
        Assert.Contains("rate(heartbeat_failures_total{", Assert.Single(Exprs(heartbeats)), StringComparison.Ordinal);

        var timeouts = Panel("Timeout Event Rate");
        Assert.Equal("timeseries", timeouts.GetProperty("type").GetString());
        var timeoutExpr = Assert.Single(Exprs(timeouts));
        Assert.Contains("rate(timeout_events_total{", timeoutExpr, StringComparison.Ordinal);
        Assert.StartsWith("sum by (reason)", timeoutExpr, StringComparison.Ordinal);
    }

    [Fact]
    public void Dashboard_VariablesSwarmCoordinatorAndTimerange_FromAMetricThatHasTheLabel()
    {
        var variables = Root.GetProperty("templating").GetProperty("list").EnumerateArray().ToDictionary(v => v.GetProperty("name").GetString()!);
        Assert.Equal("datasource", variables["datasource"].GetProperty("type").GetString());
        Assert.Equal("prometheus", variables["datasource"].GetProperty("query").GetString());

        foreach (var name in new[] { "swarm_id", "coordinator_id" })
        {
            var variable = variables[name];
            Assert.Equal("query", variable.GetProperty("type").GetString());
            Assert.True(variable.GetProperty("multi").GetBoolean());
            Assert.True(variable.GetProperty("includeAll").GetBoolean());
            Assert.Equal(".*", variable.GetProperty("allValue").GetString());
            var query = variable.GetProperty("query").GetProperty("query").GetString()!;
            Assert.Equal(query, variable.GetProperty("definition").GetString());
            var match = LabelValues().Match(query);
            Assert.True(match.Success, $"{name}: {query} is not label_values(metric{{…}}, label)");
            Assert.Equal(name, match.Groups["label"].Value);
            var metric = MetricCatalog.Get(match.Groups["metric"].Value);
            Assert.Contains(name, metric.Labels);
        }

        // The coordinator list follows the swarm selection.
        Assert.Contains("swarm_id=~\"$swarm_id\"", variables["coordinator_id"].GetProperty("query").GetProperty("query").GetString(), StringComparison.Ordinal);

        var timerange = variables["timerange"];
        Assert.Equal("custom", timerange.GetProperty("type").GetString());
        Assert.Equal(["1h", "6h", "24h", "7d"], timerange.GetProperty("query").GetString()!.Split(','));
        // Used: as the graphs' relative time and as the window of the totals.
        Assert.Contains(Panels(), p => p.TryGetProperty("timeFrom", out var t) && t.GetString() == "$timerange");
        Assert.Contains(Panels().SelectMany(Exprs), e => e.Contains("[$timerange]", StringComparison.Ordinal));
        Assert.All(Panels().Where(p => p.TryGetProperty("timeFrom", out _)), p => Assert.Equal("$timerange", p.GetProperty("timeFrom").GetString()));
    }

    [Fact]
    public void Dashboard_AnnotatesEveryBlockingCoordinationAlert()
    {
        var annotation = Assert.Single(Root.GetProperty("annotations").GetProperty("list").EnumerateArray(),
            a => a.TryGetProperty("expr", out _));
        Assert.Equal("ALERTS{component=\"blocking-coordination\", alertstate=\"firing\"}", annotation.GetProperty("expr").GetString());
        Assert.True(annotation.GetProperty("enable").GetBoolean());
        Assert.Equal("${datasource}", annotation.GetProperty("datasource").GetProperty("uid").GetString());
    }

    [Fact]
    public async Task Dashboard_EveryQueryReadsExportedOrRecordedMetrics_FilteredByTheVariables()
    {
        var exported = await ExportedFamiliesAsync();
        // Sanity: the real metric classes export the families SPEC §3.2 names.
        Assert.All(MetricCatalog.Spec, s => Assert.Equal(s.Type, exported.GetValueOrDefault(s.Name)));
        var known = new HashSet<string>(MetricCatalog.Recorded, StringComparer.Ordinal);
        foreach (var (name, type) in exported)
        {
            known.Add(name);
            if (type == "histogram")
            {
                known.UnionWith([name + "_bucket", name + "_sum", name + "_count"]);
            }
        }

        var exprs = Panels().SelectMany(p => p.GetProperty("targets").EnumerateArray().Select(t => (Panel: p.GetProperty("title").GetString()!, Expr: t.GetProperty("expr").GetString()!))).ToList();
        Assert.True(exprs.Count >= 10);
        foreach (var (panel, expr) in exprs)
        {
            var selectors = Selectors(expr);
            Assert.True(selectors.Count > 0, $"{panel}: no metric in {expr}");
            foreach (var (metric, matchers) in selectors)
            {
                Assert.True(known.Contains(metric), $"{panel}: {metric} is neither exported nor recorded ({expr})");
                var family = MetricCatalog.Spec.FirstOrDefault(s => s.Name == Regex.Replace(metric, "_(bucket|sum|count)$", "") || s.Name == metric);
                foreach (var label in new[] { "swarm_id", "coordinator_id" })
                {
                    if (family?.Labels.Contains(label) == true)
                    {
                        Assert.True(matchers.Contains($"{label}=~\"${label}\"", StringComparison.Ordinal), $"{panel}: {metric} is not filtered by ${label}: {expr}");
                    }
                }
            }
        }
    }

    [Fact]
    public async Task Dashboard_EveryQueryIsValidPromQL_PerPromtool()
    {
        // promtool 2.42 has no parse-only query command; a rules file with each query as a recording rule is parsed in full.
        var exprs = Panels().SelectMany(Exprs)
            .Append(Root.GetProperty("annotations").GetProperty("list").EnumerateArray().Single(a => a.TryGetProperty("expr", out _)).GetProperty("expr").GetString()!)
            .ToList();
        var yaml = new StringBuilder("groups:\n  - name: dashboard\n    rules:\n");
        for (var i = 0; i < exprs.Count; i++)
        {
            var expr = exprs[i].Replace("$__rate_interval", "1m", StringComparison.Ordinal).Replace("$timerange", "1h", StringComparison.Ordinal)
                .Replace("$swarm_id", ".*", StringComparison.Ordinal).Replace("$coordinator_id", ".*", StringComparison.Ordinal);
            Assert.DoesNotContain("$", expr, StringComparison.Ordinal);
            yaml.Append($"      - record: dashboard:query_{i}\n        expr: '{expr.Replace("'", "''", StringComparison.Ordinal)}'\n");
        }

        var file = Path.Combine(Path.GetTempPath(), $"cfn-dashboard-{Guid.NewGuid():N}.yaml");
        await File.WriteAllTextAsync(file, yaml.ToString());
        try
        {
            var start = new ProcessStartInfo("promtool", ["check", "rules", file]) { RedirectStandardOutput = true, RedirectStandardError = true };
            using var promtool = Process.Start(start) ?? throw new InvalidOperationException("promtool did not start (install: apt-get install prometheus)");
            var output = await promtool.StandardOutput.ReadToEndAsync() + await promtool.StandardError.ReadToEndAsync();
            await promtool.WaitForExitAsync();
            Assert.True(promtool.ExitCode == 0, $"promtool check rules failed:\n{output}\n{yaml}");
            Assert.Contains($"SUCCESS: {exprs.Count} rules found", output, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public void Selectors_FindMetricNamesOnly()
    {
        var found = Selectors("histogram_quantile(0.95, sum by (coordinator_id, le) (rate(blocking_duration_seconds_bucket{swarm_id=~\"a{b}\"}[5m]))) " +
                              "or on (x) group_left (y) vector(0) + time() - max without (z) (foo:bar offset 5m) and bool topk(3, baz)");
        Assert.Equal(["blocking_duration_seconds_bucket", "foo:bar", "baz"], found.Select(s => s.Metric));
        Assert.Equal("swarm_id=~\"a{b}\"", found[0].Matchers);
    }

    /// <summary>Every metric reference in a PromQL expression with its label matchers (strings, ranges, label lists, functions and keywords skipped).</summary>
    internal static List<(string Metric, string Matchers)> Selectors(string expr)
    {
        var result = new List<(string, string)>();
        var i = 0;
        while (i < expr.Length)
        {
            var c = expr[i];
            if (c is '"' or '\'' or '`')
            {
                i = SkipString(expr, i);
            }
            else if (c == '[')
            {
                i = expr.IndexOf(']', i) + 1;
            }
            else if (char.IsAsciiDigit(c) || (c == '.' && i + 1 < expr.Length && char.IsAsciiDigit(expr[i + 1])))
            {
                while (i < expr.Length && (char.IsAsciiLetterOrDigit(expr[i]) || expr[i] == '.'))
                {
                    i++; // numbers and durations (5m after offset)
                }
            }
            else if (char.IsAsciiLetter(c) || c is '_' or ':')
            {
                var start = i;
                while (i < expr.Length && (char.IsAsciiLetterOrDigit(expr[i]) || expr[i] is '_' or ':'))
                {
                    i++;
                }

                var word = expr[start..i];
                var next = i;
                while (next < expr.Length && expr[next] == ' ')
                {
                    next++;
                }

                if (LabelListKeywords.Contains(word))
                {
                    i = next < expr.Length && expr[next] == '(' ? expr.IndexOf(')', next) + 1 : i;
                }
                else if (Aggregations.Contains(word) || OtherKeywords.Contains(word) || (next < expr.Length && expr[next] == '('))
                {
                    // a function or an aggregation (its argument list is read on), or an operator keyword
                }
                else
                {
                    var matchers = "";
                    if (next < expr.Length && expr[next] == '{')
                    {
                        var end = next + 1;
                        while (expr[end] != '}')
                        {
                            end = expr[end] == '"' ? SkipString(expr, end) : end + 1;
                        }

                        matchers = expr[(next + 1)..end];
                        i = end + 1;
                    }

                    result.Add((word, matchers));
                }
            }
            else
            {
                i++;
            }
        }

        return result;
    }

    private static int SkipString(string expr, int i)
    {
        var quote = expr[i++];
        while (expr[i] != quote)
        {
            i += expr[i] == '\\' ? 2 : 1;
        }

        return i + 1;
    }

    /// <summary>The families the real metric classes create, with their types (what a cfn process can export).</summary>
    private static async Task<Dictionary<string, string>> ExportedFamiliesAsync()
    {
        var registry = Prometheus.Metrics.NewCustomRegistry();
        _ = new CoordinationMetrics(registry);
        _ = new RecoveryMetrics(registry);
        _ = new SwarmMetrics(registry);
        _ = new CircuitBreakerRegistry(registry);
        // Every process runs background loops; a registered one has its error series at 0.
        new Cfn.Coordination.Background.LoopHealth(registry).Register(Cfn.Coordination.Background.LoopNames.Heartbeat, "c", null).Dispose();
        using var stream = new MemoryStream();
        await registry.CollectAndExportAsTextAsync(stream);
        return ExpositionText.Parse(Encoding.UTF8.GetString(stream.ToArray())).ToDictionary(f => f.Key, f => f.Value.Type!);
    }

    private static IEnumerable<JsonElement> Panels() =>
        Root.GetProperty("panels").EnumerateArray().Where(p => p.GetProperty("type").GetString() != "row");

    private static JsonElement Panel(string title) => Assert.Single(Panels(), p => p.GetProperty("title").GetString() == title);

    private static List<string> Exprs(JsonElement panel) =>
        [.. panel.GetProperty("targets").EnumerateArray().Select(t => t.GetProperty("expr").GetString()!)];

    internal static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "cfn.slnx")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("cfn.slnx not found above " + AppContext.BaseDirectory);
    }

    [GeneratedRegex("""^label_values\((?<metric>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?,\s*(?<label>[a-zA-Z_][a-zA-Z0-9_]*)\)$""")]
    private static partial Regex LabelValues();
}

using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.RegularExpressions;
using Cfn.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Cfn.Tests.Deploy;

/// <summary>
/// Prometheus in the loop (issue 5 item 6): Debian's real <c>prometheus</c> scrapes <c>cfn up</c> and one extra validator
/// every second with the repository's rules loaded, the runbook's PromQL queries (SPEC §5 #8, #14, #19, #35, #37, #49,
/// #52, #59, #63, #64, #71, #72, #76, #89–#92) go through its HTTP API and the runbook's <c>jq</c> filters, and freezing
/// the extra validator (SIGSTOP: it neither ACKs nor heartbeats) makes the real <c>TimeoutEvents</c> alert fire.
/// </summary>
/// <remarks>
/// The PromQL and the jq pipelines are the seed runbook's, verbatim. Only the curl part differs: the runbook's
/// <c>curl -s "http://…/api/v1/query?query=topk(10, blocking_duration_seconds)"</c> does not work with Debian's curl 7.88,
/// which refuses the unencoded space ("URL using bad/illegal format") and reads <c>[5m]</c> as a URL glob ("bad range"),
/// exiting 3 with no output under <c>-s</c>. So the queries are sent as docs/runbook.md sends them:
/// <c>curl -s -G http://…/api/v1/query --data-urlencode 'query=…'</c>.
/// </remarks>
public sealed class PrometheusLoopTests(ITestOutputHelper output)
{
    private const string Secret = "promloop-test-secret-0123456789abcdef0123456789abcdef";
    private const string FrozenValidator = "validator-x";
    private const string RealRules = "deploy/prometheus/rules/blocking-coordination.yaml";
    private static readonly TimeSpan Startup = TimeSpan.FromSeconds(90);

    [Fact]
    public async Task Prometheus_ScrapesCfnUpWithTheRules_RunbookQueriesReturnLabelledData_AndTimeoutEventsFires()
    {
        var dir = Directory.CreateTempSubdirectory("cfn-prometheus-loop-").FullName;
        try
        {
            var rules = await WriteShortenedRulesAsync(dir);

            // Every item asks both validators (VALIDATORS_PER_ITEM=2 with validator-0 and validator-x) and waits at most
            // 1.5 s, so once validator-x is frozen every wait times out (timeout_events_total{reason="blocking"}). Fast
            // dead detection (stale after 3 s, dead after 10 warnings a second apart) adds heartbeat_failures_total{reason="stale"},
            // timeout_events_total{reason="heartbeat"} and a replacement spawn; 10 warnings rather than 2 keep the waits timing
            // out for ~12 s (6 coordinators × ~8 timeouts), far above the alert's 0.1/s over 2m.
            var upEnvironment = new Dictionary<string, string?>
            {
                ["BLOCKING_COORDINATION_SECRET"] = Secret,
                ["REDIS_URL"] = null,
                ["REDIS_HOST"] = null,
                ["HEARTBEAT_INTERVAL_MS"] = "1000",
                ["VALIDATION_DURATION_MEDIAN_MS"] = "50",
                ["VALIDATION_DURATION_P95_MS"] = "200",
                ["VALIDATORS_PER_ITEM"] = "2",
                ["BLOCKING_TIMEOUT_MS"] = "1500",
                ["HEARTBEAT_STALE_THRESHOLD_MS"] = "3000",
                ["HEARTBEAT_MONITOR_INTERVAL_MS"] = "1000",
                ["HEARTBEAT_MAX_WARNINGS"] = "10",
            };
            var upPort = CfnRun.FreePort();
            await using var up = CfnRun.Start(["up", "--http-port", $"{upPort}", "--swarms", "2", "--coordinators", "3", "--validators", "1"], upEnvironment);
            await up.WaitForLineAsync(l => l == "ready", Startup);
            var redis = UpRedis.Of(up).Url;

            var validatorPort = CfnRun.FreePort();
            await using var validator = CfnRun.Start(["serve", "--role", "validator"], new Dictionary<string, string?>
            {
                ["BLOCKING_COORDINATION_SECRET"] = Secret,
                ["REDIS_URL"] = redis,
                ["REDIS_HOST"] = null,
                ["COORDINATOR_ID"] = FrozenValidator,
                ["HTTP_PORT"] = $"{validatorPort}",
                ["HEARTBEAT_INTERVAL_MS"] = "1000",
                ["VALIDATION_DURATION_MEDIAN_MS"] = "50",
                ["VALIDATION_DURATION_P95_MS"] = "200",
            });
            try
            {
                await validator.WaitForLineAsync(l => l.Contains("Validation complete workId=", StringComparison.Ordinal) &&
                                                      l.Contains($"validatorId={FrozenValidator} ", StringComparison.Ordinal), Startup);

                var prometheusPort = CfnRun.FreePort();
                var config = Path.Combine(dir, "prometheus.yml");
                await File.WriteAllTextAsync(config, $"""
                    global:
                      scrape_interval: 1s
                      scrape_timeout: 1s
                      evaluation_interval: 1s
                    rule_files:
                      - {rules}
                    scrape_configs:
                      - job_name: cfn-up
                        static_configs:
                          - targets: ['127.0.0.1:{upPort}']
                      - job_name: validator
                        static_configs:
                          - targets: ['127.0.0.1:{validatorPort}']
                    """);
                await using var prometheus = PrometheusProcess.Start(config, Path.Combine(dir, "data"), prometheusPort);
                using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{prometheusPort}"), Timeout = TimeSpan.FromSeconds(5) };
                await prometheus.WaitReadyAsync(http, TimeSpan.FromSeconds(30));

                // A few scrapes of both targets before the freeze, so rate() has samples from before it.
                await WaitForAsync(http, "min(count_over_time(up[1m])) >= 3 and min(up) == 1", TimeSpan.FromSeconds(30), prometheus);

                await validator.SignalAsync("STOP");
                var frozen = Stopwatch.StartNew();
                var (pendingAfter, firingAfter, alert) = await WaitForFiringAsync(http, "TimeoutEvents", frozen, TimeSpan.FromSeconds(60), prometheus);
                output.WriteLine($"TimeoutEvents: pending {Seconds(pendingAfter)}, firing {Seconds(firingAfter)} after SIGSTOP of {FrozenValidator} " +
                                 $"(rules: {RealRules}, for: shortened to 5s)");
                Assert.Equal("critical", alert.GetProperty("labels").GetProperty("severity").GetString());
                Assert.True(double.Parse(alert.GetProperty("value").GetString()!, CultureInfo.InvariantCulture) > 0.1);

                var failures = await RunRunbookQueriesAsync(prometheusPort, TimeSpan.FromSeconds(60));
                Assert.True(failures.Count == 0, string.Join("\n", failures) + "\ncfn up:\n" + up.Tail(20));
            }
            finally
            {
                await CfnRun.ShellAsync($"kill -CONT {validator.Pid}", allowFailure: true); // then DisposeAsync kills it
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// The rules Prometheus loads: deploy/prometheus/rules/blocking-coordination.yaml, written to a temporary copy with every <c>for:</c> shortened to 5s (TimeoutEvents' 2m)
    /// and every group <c>interval:</c> to 1s, so the alert can fire within the test; checked with <c>promtool check rules</c>.
    /// </summary>
    private static async Task<string> WriteShortenedRulesAsync(string dir)
    {
        var root = RepoRoot();
        var source = Path.Combine(root, RealRules);

        var shortened = ShortenDurations(await File.ReadAllTextAsync(source));
        Assert.Matches(@"(?m)^\s+for: 5s\b", shortened);
        var copy = Path.Combine(dir, "rules-for-test.yaml");
        await File.WriteAllTextAsync(copy, shortened);
        await CfnRun.ShellAsync($"promtool check rules '{copy}'");
        return copy;
    }

    /// <summary>
    /// Rewrites the YAML mapping keys <c>for:</c> and <c>interval:</c> whose value is a plain Prometheus duration, at any
    /// indentation and keeping a trailing comment. Line-anchored, so text inside quoted annotations is left alone; in a rules
    /// file these keys only occur on rules (<c>for</c>) and groups (<c>interval</c>).
    /// </summary>
    internal static string ShortenDurations(string yaml) => Regex.Replace(
        yaml,
        @"^(?<indent>[ \t]*(?:-[ \t]+)?)(?<key>for|interval):[ \t]*(?<quote>[""']?)(?:\d+(?:ms|[smhdwy]))+\k<quote>(?<rest>[ \t]*(?:#.*)?)$",
        m => $"{m.Groups["indent"].Value}{m.Groups["key"].Value}: {(m.Groups["key"].Value == "for" ? "5s" : "1s")}{m.Groups["rest"].Value}",
        RegexOptions.Multiline);

    [Fact]
    public void ShortenDurations_RewritesForAndIntervalKeys_LeavesOtherTextAlone()
    {
        const string yaml = """
            groups:
              - name: a
                interval: 30s
                rules:
                  - alert: TimeoutEvents
                    expr: sum(rate(timeout_events_total[2m])) > 0.1
                    for: 2m   # runbook
                    annotations:
                      description: 'fires when above 0.1/s for: 2m'
                  - alert: Other
                    for: "1h30m"
            """;
        var shortened = ShortenDurations(yaml);
        Assert.Contains("    interval: 1s\n", shortened, StringComparison.Ordinal);
        Assert.Contains("        for: 5s   # runbook\n", shortened, StringComparison.Ordinal);
        Assert.EndsWith("\n        for: 5s", shortened, StringComparison.Ordinal);
        Assert.Contains("expr: sum(rate(timeout_events_total[2m])) > 0.1", shortened, StringComparison.Ordinal);
        Assert.Contains("'fires when above 0.1/s for: 2m'", shortened, StringComparison.Ordinal);
    }

    /// <summary>Runs every listed runbook query; polls each until its output has the data and labels its filter reads.</summary>
    private async Task<List<string>> RunRunbookQueriesAsync(int port, TimeSpan within)
    {
        var deadline = DateTime.UtcNow + within;
        var failures = new List<string>();
        foreach (var query in RunbookQueries())
        {
            var command = $"curl -s -G http://127.0.0.1:{port}/api/v1/query --data-urlencode 'query={query.PromQl}' | {query.Pipeline}";
            string result;
            string? problem;
            do
            {
                // allowFailure: `| head -10` may end sort with SIGPIPE; the output is what is judged.
                result = await CfnRun.ShellAsync(command, allowFailure: true);
                problem = query.Check(result);
                if (problem is null || DateTime.UtcNow > deadline)
                {
                    break;
                }

                await Task.Delay(500);
            }
            while (true);

            var shown = string.Join(" | ", Lines(result).Take(4)) + (Lines(result).Length > 4 ? $" | … ({Lines(result).Length} lines)" : "");
            output.WriteLine($"#{query.Number} {query.PromQl} -> {shown}{(problem is null ? "" : "   FAILED: " + problem)}");
            if (problem is not null)
            {
                failures.Add($"#{query.Number} `{command}`: {problem}; output:\n{result}");
            }
        }

        return failures;
    }

    private sealed record RunbookQuery(string Number, string PromQl, string Pipeline, Func<string, string?> Check);

    /// <summary>The runbook's queries and jq pipelines (§5); #89–#92 are dashboard queries with no filter: they read the labels the panels show.</summary>
    private static IEnumerable<RunbookQuery> RunbookQueries()
    {
        const string first = "jq -r '.data.result[0].value[1]'";
        string[] heartbeatReasons = ["connection", "timeout", "stale", "error"];
        string[] timeoutReasons = ["heartbeat", "blocking", "external"];
        string[] failureReasons = ["redis_error", "ack_timeout", "validation", "circuit_open"];

        yield return new("8", "rate(coordinator_spawns_total[1h])", first, Scalar);
        yield return new("14", "topk(10, blocking_duration_seconds)",
            """jq -r '.data.result[] | "\(.metric.coordinator_id): \(.value[1])s"'""",
            o => Labelled(o, @"^(?<coordinator_id>\S+): (?<value>\S+)s$"));
        yield return new("19", "histogram_quantile(0.95, signal_delivery_latency_seconds_bucket)", first, Scalar);
        yield return new("35", "rate(signals_sent_total[5m])", first, Scalar);
        yield return new("37", "topk(10, rate(signals_sent_total[5m]))",
            """jq -r '.data.result[] | "\(.metric.coordinator_id): \(.value[1]) signals/sec"'""",
            o => Labelled(o, @"^(?<coordinator_id>\S+): (?<value>\S+) signals/sec$"));
        yield return new("49", "heartbeat_failures_total",
            """jq -r '.data.result[] | "\(.metric.coordinator_id): \(.value[1]) failures"' | sort -t: -k2 -rn | head -10""",
            o => Labelled(o, @"^(?<coordinator_id>\S+): (?<value>\S+) failures$", required: ("coordinator_id", FrozenValidator)));
        yield return new("52", "heartbeat_failures_total",
            """jq -r '.data.result[] | "\(.metric.reason): \(.value[1])"' | sort | uniq -c | sort -rn""",
            o => Labelled(o, @"^\s*\d+ (?<reason>\S+): (?<value>\S+)$", reasons: heartbeatReasons, required: ("reason", "stale")));
        yield return new("59", "rate(heartbeat_failures_total[2m])", first, Scalar);
        yield return new("63", "timeout_events_total",
            """jq -r '.data.result[] | "\(.metric.reason): \(.value[1])"' | sort | uniq -c | sort -rn""",
            o => Labelled(o, @"^\s*\d+ (?<reason>\S+): (?<value>\S+)$", reasons: timeoutReasons, required: ("reason", "blocking"))
                 ?? Labelled(o, @"^\s*\d+ (?<reason>\S+): (?<value>\S+)$", reasons: timeoutReasons, required: ("reason", "heartbeat")));
        yield return new("64", "topk(10, timeout_events_total)",
            """jq -r '.data.result[] | "\(.metric.coordinator_id): \(.value[1])"'""",
            o => Labelled(o, @"^(?<coordinator_id>\S+): (?<value>\S+)$"));
        yield return new("71", "rate(timeout_events_total[2m])", first, Scalar);
        yield return new("72", "histogram_quantile(0.99, blocking_duration_seconds_bucket)", first, Scalar);
        yield return new("76", "topk(1, blocking_duration_seconds)",
            "jq -r '.data.result[0].metric.coordinator_id'",
            o => Lines(o).Length == 1 ? Labelled(o, @"^(?<coordinator_id>\S+)$") : $"expected one coordinator ID, got {Lines(o).Length} lines");
        yield return new("89", "sum by (swarm_id) (blocking_coordinators_active)",
            """jq -r '.data.result[] | "\(.metric.swarm_id): \(.value[1])"'""",
            o => Labelled(o, @"^(?<swarm_id>\S+): (?<value>\S+)$"));
        yield return new("90", "histogram_quantile(0.95, sum by (coordinator_id, le) (rate(blocking_duration_seconds_bucket[5m])))",
            """jq -r '.data.result[] | "\(.metric.coordinator_id): \(.value[1])"'""",
            o => Labelled(o, @"^(?<coordinator_id>\S+): (?<value>\S+)$", nanAllowed: true)); // NaN for a coordinator with no wait ending in 5m
        yield return new("91", "rate(signals_failed_total[5m])",
            """jq -r '.data.result[] | "\(.metric.coordinator_id) \(.metric.reason): \(.value[1])"'""",
            o => Labelled(o, @"^(?<coordinator_id>\S+) (?<reason>\S+): (?<value>\S+)$", reasons: failureReasons, required: ("reason", "ack_timeout")));
        // The gauge holds milliseconds: the age is a few seconds (a seconds gauge would give an age of decades).
        yield return new("92", "(time() - (blocking_heartbeat_timestamp / 1000))",
            """jq -r '.data.result[] | "\(.metric.coordinator_id): \(.value[1])"'""",
            o => Labelled(o, @"^(?<coordinator_id>\S+): (?<value>\S+)$", valueCheck: age => age is > -60 and < 600));
    }

    /// <summary>One number (the runbook's <c>.data.result[0].value[1]</c>), not <c>null</c> nor NaN.</summary>
    private static string? Scalar(string output)
    {
        var lines = Lines(output);
        if (lines.Length != 1)
        {
            return $"expected one value, got {lines.Length} lines";
        }

        return double.TryParse(lines[0], NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && !double.IsNaN(value)
            ? null
            : $"not a number: {lines[0]}";
    }

    /// <summary>
    /// At least one line, every line of <paramref name="pattern"/>'s shape with each label group set (not empty, not jq's
    /// <c>null</c>) and the <c>value</c> group a number; reasons from the allowed set; the required label value present.
    /// </summary>
    private static string? Labelled(string output, string pattern, string[]? reasons = null, (string Label, string Value)? required = null,
                                    bool nanAllowed = false, Func<double, bool>? valueCheck = null)
    {
        var lines = Lines(output);
        if (lines.Length == 0)
        {
            return "no data";
        }

        var regex = new Regex(pattern);
        var matches = new List<Match>();
        foreach (var line in lines)
        {
            var match = regex.Match(line);
            if (!match.Success)
            {
                return $"line not of the expected shape: {line}";
            }

            foreach (var label in regex.GetGroupNames().Where(g => g is not "0" and not "value"))
            {
                if (match.Groups[label].Value is "" or "null")
                {
                    return $"label {label} missing: {line}";
                }
            }

            if (match.Groups["value"].Success)
            {
                if (!double.TryParse(match.Groups["value"].Value, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) ||
                    (double.IsNaN(value) && !nanAllowed) || (valueCheck is not null && !valueCheck(value)))
                {
                    return $"value not as expected: {line}";
                }
            }

            if (reasons is not null && !reasons.Contains(match.Groups["reason"].Value))
            {
                return $"reason not one of {string.Join(", ", reasons)}: {line}";
            }

            matches.Add(match);
        }

        return required is { } r && !matches.Any(m => m.Groups[r.Label].Value == r.Value) ? $"no line with {r.Label} {r.Value}" : null;
    }

    private static string[] Lines(string output) => output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private static string Seconds(TimeSpan? time) => time is { } t ? $"{t.TotalSeconds:0.0}s" : "never seen";

    /// <summary>Polls an instant query until it returns a series.</summary>
    private static async Task WaitForAsync(HttpClient http, string promQl, TimeSpan within, PrometheusProcess prometheus)
    {
        string last = "";
        if (await EventuallyAsync(async () =>
            {
                using var body = await http.GetFromJsonAsync<JsonDocument>("/api/v1/query?query=" + Uri.EscapeDataString(promQl));
                last = body!.RootElement.GetRawText();
                return body.RootElement.GetProperty("data").GetProperty("result").GetArrayLength() > 0;
            }, within, pollMs: 500))
        {
            return;
        }

        Assert.Fail($"`{promQl}` returned nothing within {within.TotalSeconds}s: {last}\nprometheus:\n{prometheus.Tail(20)}");
    }

    /// <summary>Polls <c>/api/v1/alerts</c> until <paramref name="alertName"/> is firing; returns when it was first seen pending and firing.</summary>
    private static async Task<(TimeSpan? Pending, TimeSpan Firing, JsonElement Alert)> WaitForFiringAsync(
        HttpClient http, string alertName, Stopwatch since, TimeSpan within, PrometheusProcess prometheus)
    {
        TimeSpan? pending = null;
        string last = "";
        (TimeSpan? Pending, TimeSpan Firing, JsonElement Alert)? fired = null;
        if (await EventuallyAsync(async () =>
            {
                using var body = await http.GetFromJsonAsync<JsonDocument>("/api/v1/alerts");
                last = body!.RootElement.GetRawText();
                foreach (var alert in body.RootElement.GetProperty("data").GetProperty("alerts").EnumerateArray())
                {
                    if (alert.GetProperty("labels").GetProperty("alertname").GetString() != alertName)
                    {
                        continue;
                    }

                    var state = alert.GetProperty("state").GetString();
                    pending ??= since.Elapsed;
                    if (state == "firing")
                    {
                        fired = (pending, since.Elapsed, alert.Clone());
                        return true;
                    }
                }

                return false;
            }, within - since.Elapsed, pollMs: 500))
        {
            return fired!.Value;
        }

        Assert.Fail($"{alertName} not firing within {within.TotalSeconds}s of the freeze; alerts: {last}\nprometheus:\n{prometheus.Tail(20)}");
        throw new InvalidOperationException("unreachable");
    }

    private static string RepoRoot()
    {
        var root = new DirectoryInfo(AppContext.BaseDirectory);
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "cfn.slnx")))
        {
            root = root.Parent;
        }

        return root?.FullName ?? throw new InvalidOperationException("no cfn.slnx above " + AppContext.BaseDirectory);
    }

    /// <summary>Debian's <c>/usr/bin/prometheus</c> as a child process on a loopback port, killed on dispose.</summary>
    private sealed class PrometheusProcess : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly ConcurrentQueue<string> _lines = new();

        private PrometheusProcess(Process process)
        {
            _process = process;
            process.OutputDataReceived += (_, e) => Add(e.Data);
            process.ErrorDataReceived += (_, e) => Add(e.Data);
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
        }

        public static PrometheusProcess Start(string config, string data, int port)
        {
            var start = new ProcessStartInfo("prometheus")
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            start.ArgumentList.Add($"--config.file={config}");
            start.ArgumentList.Add($"--storage.tsdb.path={data}");
            start.ArgumentList.Add($"--web.listen-address=127.0.0.1:{port}");
            return new PrometheusProcess(Process.Start(start) ?? throw new InvalidOperationException("prometheus did not start"));
        }

        public string Tail(int count) => string.Join('\n', _lines.TakeLast(count));

        /// <summary>Waits for <c>/-/ready</c> (config and rules loaded, TSDB open).</summary>
        public async Task WaitReadyAsync(HttpClient http, TimeSpan within)
        {
            var ready = false;
            await EventuallyAsync(async () =>
            {
                try
                {
                    using var response = await http.GetAsync(new Uri("/-/ready", UriKind.Relative));
                    ready = response.IsSuccessStatusCode;
                }
                catch (HttpRequestException)
                {
                    // not listening yet
                }

                return ready || _process.HasExited;
            }, within, pollMs: 200);
            Assert.True(ready, $"prometheus not ready within {within.TotalSeconds}s (exited: {_process.HasExited}):\n{Tail(30)}");
        }

        private void Add(string? line)
        {
            if (line is not null)
            {
                _lines.Enqueue(line);
            }
        }

        public async ValueTask DisposeAsync()
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync();
            }

            _process.Dispose();
        }
    }
}

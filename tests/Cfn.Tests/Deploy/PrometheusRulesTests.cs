using static Cfn.Tests.Deploy.RulesTooling;

namespace Cfn.Tests.Deploy;

/// <summary>
/// deploy/prometheus/rules/blocking-coordination.yaml: valid for promtool, its unit tests pass and cover every rule, every
/// alert carries the labels and annotations the routes and the runbook need, it reads only metrics cfn exports, and the
/// PrometheusRule manifests are the same rules.
/// </summary>
public sealed class PrometheusRulesTests
{
    /// <summary>The runbook's six alerts, their escalations and the playbook's and post-incident alerts (SPEC §3.3).</summary>
    private static readonly string[] ExpectedAlerts =
    [
        "HighBlockingCoordinators", "HighBlockingCoordinatorsEscalation", "HighBlockingDuration", "StuckCoordinator",
        "HighSignalLatency", "HighSignalLatencyEscalation", "HeartbeatFailures", "HeartbeatFailuresEscalation",
        "TimeoutEvents", "TimeoutEventsEscalation", "NoActiveCoordinators", "RedisConnectionLoss",
        "DeadCoordinatorDetected", "HeartbeatFailuresEarlyWarning",
    ];

    private static readonly string[] ExpectedRecords =
        ["blocking_duration_seconds", "blocking:duration:p95", "blocking:duration:p99", "signal:latency:p95", "signal:latency:p99"];

    /// <summary>
    /// The metric families cfn exports (CoordinationMetrics, RecoveryMetrics, SwarmMetrics, CircuitBreakerRegistry,
    /// LifecycleHooks); histograms as their _bucket/_sum/_count series.
    /// </summary>
    private static readonly string[] ExportedFamilies =
    [
        "blocking_coordinators_active", "blocking_coordinators_total", "blocking_current_duration_seconds",
        "heartbeat_failures_total", "timeout_events_total", "signals_sent_total", "signals_failed_total",
        "blocking_heartbeat_timestamp", "ack_verification_failures_total", "work_item_writes_refused_total",
        "signals_ignored_total", "dead_coordinators_total", "escalations_total", "cleanup_keys_deleted_total",
        "cleanup_runs_total", "monitor_malformed_values_total", "work_items_transferred_total", "signals_handed_over_total",
        "heartbeat_monitor_passes_total", "coordinator_spawns_total", "circuit_breaker_state", "lifecycle_hooks_total",
    ];

    private static readonly string[] ExportedHistograms = ["blocking_duration_seconds", "signal_delivery_latency_seconds"];

    private static readonly string[] Severities = ["critical", "high", "warning", "info"];

    [Fact]
    public async Task PromtoolCheckRules_RulesFile_Succeeds()
    {
        var output = await RunOkAsync("promtool", "check", "rules", RulesFile);
        Assert.Contains("SUCCESS", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PromtoolTestRules_UnitTests_AllPass()
    {
        var files = TestFiles();
        Assert.True(files.Count >= 3, "expected the unit test files in " + RuleTestsFolder);
        var output = await RunOkAsync("promtool", ["test", "rules", .. files]);
        Assert.DoesNotContain("FAILED", output, StringComparison.Ordinal);
    }

    [Fact]
    public void RulesFile_HasTheRunbooksAlertsAndRecordingRules()
    {
        var rules = Rules(LoadYaml(RulesFile)).Select(r => r.Rule).ToList();
        Assert.Equal(ExpectedAlerts.Order(), rules.Select(r => Str(r, "alert")).OfType<string>().Order());
        Assert.Equal(ExpectedRecords.Order(), rules.Select(r => Str(r, "record")).OfType<string>().Order());
        var recording = Assert.Single(rules, r => Str(r, "record") == "blocking_duration_seconds");
        Assert.Equal("max by (coordinator_id, swarm_id) (blocking_current_duration_seconds)", Str(recording, "expr"));
    }

    [Fact]
    public void EveryAlert_HasSeverityComponentSummaryDescriptionAndRunbookUrl()
    {
        foreach (var alert in Alerts(LoadYaml(RulesFile)))
        {
            var name = Str(alert, "alert");
            var labels = Sub(alert, "labels");
            var annotations = Sub(alert, "annotations");
            Assert.True(Severities.Contains(Str(labels, "severity")), $"{name}: severity '{Str(labels, "severity")}' is not one of {string.Join(", ", Severities)}");
            Assert.True(Str(labels, "component") == "blocking-coordination", $"{name}: component label");
            foreach (var key in new[] { "summary", "description", "runbook_url" })
            {
                Assert.False(string.IsNullOrWhiteSpace(Str(annotations, key)), $"{name}: annotation {key} missing");
            }
        }
    }

    [Fact]
    public void Escalations_AreSeverityHigh_AndTheRunbooksP0AlertsCritical()
    {
        var severity = Alerts(LoadYaml(RulesFile)).ToDictionary(a => Str(a, "alert")!, a => Str(Sub(a, "labels"), "severity"));
        foreach (var name in ExpectedAlerts.Where(n => n.EndsWith("Escalation", StringComparison.Ordinal)))
        {
            Assert.Equal("high", severity[name]);
        }

        foreach (var name in new[] { "HeartbeatFailures", "TimeoutEvents", "StuckCoordinator", "RedisConnectionLoss" })
        {
            Assert.Equal("critical", severity[name]);
        }

        Assert.Equal("info", severity["NoActiveCoordinators"]);
        Assert.Equal("warning", severity["DeadCoordinatorDetected"]);
    }

    [Fact]
    public void RunbookUrls_PointAtHeadingsOfTheRunbook()
    {
        var anchors = HeadingAnchors(Read(RunbookFile));
        Assert.Contains("alert-heartbeatfailures", anchors);
        foreach (var alert in Alerts(LoadYaml(RulesFile)).Concat(Alerts(Spec(EarlyWarningManifest))))
        {
            var url = Str(Sub(alert, "annotations"), "runbook_url") ?? "";
            Assert.True(url.StartsWith(RunbookUrlBase, StringComparison.Ordinal), $"{Str(alert, "alert")}: runbook_url {url} does not start with {RunbookUrlBase}");
            var anchor = url[RunbookUrlBase.Length..];
            Assert.True(anchors.Contains(anchor), $"{Str(alert, "alert")}: no heading with anchor #{anchor} in {RunbookFile}");
        }
    }

    [Fact]
    public void SixRunbookAlerts_LinkToTheirOwnSections()
    {
        var url = Alerts(LoadYaml(RulesFile)).ToDictionary(a => Str(a, "alert")!, a => Str(Sub(a, "annotations"), "runbook_url"));
        foreach (var name in new[] { "HighBlockingCoordinators", "HighBlockingDuration", "HighSignalLatency", "HeartbeatFailures", "TimeoutEvents", "StuckCoordinator" })
        {
            Assert.Equal(RunbookUrlBase + "alert-" + name.ToLowerInvariant(), url[name]);
        }
    }

    [Fact]
    public void Expressions_ReadOnlyMetricsCfnExportsOrTheRulesRecord()
    {
        var rules = Rules(LoadYaml(RulesFile)).Select(r => r.Rule).ToList();
        var known = new HashSet<string>(ExportedFamilies, StringComparer.Ordinal);
        foreach (var histogram in ExportedHistograms)
        {
            known.UnionWith([histogram + "_bucket", histogram + "_sum", histogram + "_count"]);
        }

        known.UnionWith(rules.Select(r => Str(r, "record")).OfType<string>());
        foreach (var rule in rules)
        {
            var expr = Str(rule, "expr") ?? "";
            var names = MetricNames(expr);
            Assert.NotEmpty(names);
            var unknown = names.Where(n => !known.Contains(n)).ToList();
            Assert.True(unknown.Count == 0, $"{Str(rule, "alert") ?? Str(rule, "record")}: {string.Join(", ", unknown)} not exported by cfn, in: {expr}");
        }
    }

    [Fact]
    public void MetricNames_FindsMetricsButNotFunctionsLabelsOrDurations()
    {
        var names = MetricNames(
            "histogram_quantile(0.95, sum by (le) (rate(x_bucket{le=\"+Inf\", a=~\"b\"}[5m]))) > 1e3 or on () max(y offset 5m) and z");
        Assert.Equal(["x_bucket", "y", "z"], names);
    }

    [Fact]
    public void UnitTests_ShowEveryAlertFiringAndNotFiring_AndEveryRecordingRulesValue()
    {
        var fired = new HashSet<string>(StringComparer.Ordinal);
        var silent = new HashSet<string>(StringComparer.Ordinal);
        var exprs = new List<string>();
        foreach (var file in TestFiles())
        {
            var document = Map(LoadYaml(file), file);
            Assert.Contains("../rules/blocking-coordination.yaml", List(document["rule_files"], "rule_files").Cast<string>());
            foreach (var testNode in List(document["tests"], "tests"))
            {
                var test = Map(testNode, "test");
                foreach (var caseNode in test.TryGetValue("alert_rule_test", out var a) ? List(a, "alert_rule_test") : [])
                {
                    var alertCase = Map(caseNode, "alert_rule_test");
                    var name = Str(alertCase, "alertname")!;
                    var expected = alertCase.TryGetValue("exp_alerts", out var e) ? e as IList<object> : null;
                    if (expected is { Count: > 0 })
                    {
                        fired.Add(name);
                        Assert.All(expected, x => Assert.True(Map(x, name).ContainsKey("exp_annotations"), $"{file}: {name} firing case without exp_annotations"));
                    }
                    else
                    {
                        silent.Add(name);
                    }
                }

                foreach (var caseNode in test.TryGetValue("promql_expr_test", out var p) ? List(p, "promql_expr_test") : [])
                {
                    exprs.Add(Str(Map(caseNode, "promql_expr_test"), "expr") ?? "");
                }
            }
        }

        Assert.Empty(ExpectedAlerts.Except(fired));
        Assert.Empty(ExpectedAlerts.Except(silent));
        Assert.All(ExpectedRecords, r => Assert.Contains(exprs, e => MetricNames(e).Contains(r)));
    }

    [Fact]
    public async Task GeneratedPrometheusRule_IsTheGeneratorsOutput()
    {
        var (_, generated) = await RunToolOkAsync("bash", "scripts/gen-prometheusrule.sh", "--stdout");
        Assert.True(generated == Read(GeneratedManifest),
            $"{GeneratedManifest} differs from the output of scripts/gen-prometheusrule.sh: run `bash scripts/gen-prometheusrule.sh`");
    }

    [Fact]
    public void GeneratedPrometheusRule_HoldsTheRulesFilesGroups()
    {
        var manifest = Map(LoadYaml(GeneratedManifest), GeneratedManifest);
        Assert.Equal("monitoring.coreos.com/v1", Str(manifest, "apiVersion"));
        Assert.Equal("PrometheusRule", Str(manifest, "kind"));
        Assert.Equal(ToYaml(LoadYaml(RulesFile)), ToYaml(Spec(GeneratedManifest)));
    }

    [Theory]
    [InlineData(GeneratedManifest)]
    [InlineData(EarlyWarningManifest)]
    public async Task PrometheusRuleManifest_SpecPassesPromtoolCheck(string manifest)
    {
        var file = Path.Combine(Path.GetTempPath(), $"cfn-rules-{Guid.NewGuid():N}.yaml");
        await File.WriteAllTextAsync(file, ToYaml(Spec(manifest)));
        try
        {
            await RunOkAsync("promtool", "check", "rules", file);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public void EarlyWarningManifest_IsTheRulesFilesHeartbeatGroup()
    {
        var manifest = Map(LoadYaml(EarlyWarningManifest), EarlyWarningManifest);
        Assert.Equal("PrometheusRule", Str(manifest, "kind"));
        Assert.Equal("heartbeat-early-warning", Str(Sub(manifest, "metadata"), "name"));
        var rulesGroup = List(Map(LoadYaml(RulesFile), RulesFile)["groups"], "groups").Single(g => Str(Map(g, "group"), "name") == "heartbeat");
        var manifestGroup = Assert.Single(List(Map(Spec(EarlyWarningManifest), "spec")["groups"], "groups"));
        Assert.Equal(ToYaml(rulesGroup), ToYaml(manifestGroup));
    }

    private static object Spec(string manifest) => Map(LoadYaml(manifest), manifest)["spec"];

    private static List<string> TestFiles() =>
        [.. Directory.GetFiles(PathOf(RuleTestsFolder), "*.yaml").Select(f => Path.GetRelativePath(Root, f).Replace('\\', '/')).Order(StringComparer.Ordinal)];
}

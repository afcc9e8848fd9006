using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Cfn.Tests.Infrastructure;
using static Cfn.Tests.Deploy.RulesTooling;

namespace Cfn.Tests.Deploy;

/// <summary>
/// deploy/alertmanager/alertmanager.yml: valid for amtool, each severity the rules use reaches the runbook's receiver,
/// and the inhibit rules mute what they should (checked on a real Alertmanager) and name alerts that exist.
/// </summary>
public sealed class AlertmanagerConfigTests
{
    [Fact]
    public async Task AmtoolCheckConfig_Succeeds()
    {
        var output = await RunOkAsync("amtool", "check-config", AlertmanagerFile);
        Assert.Contains("SUCCESS", output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("critical", "pagerduty")]
    [InlineData("high", "pagerduty")]
    [InlineData("warning", "slack")]
    [InlineData("info", "email")]
    public async Task AmtoolRoutesTest_Severity_ReachesItsReceiver(string severity, string receiver)
    {
        var (_, stdout) = await RunToolOkAsync("amtool", "config", "routes", "test", "--config.file=" + AlertmanagerFile,
            "--verify.receivers=" + receiver, "severity=" + severity, "component=blocking-coordination");
        Assert.Equal(receiver, stdout.Trim());
    }

    [Fact]
    public async Task AmtoolRoutesTest_WrongReceiver_Fails()
    {
        // So that the routing tests above can fail: --verify.receivers exits non-zero on a mismatch.
        var (exitCode, _, _) = await RunAsync("amtool", "config", "routes", "test", "--config.file=" + AlertmanagerFile,
            "--verify.receivers=email", "severity=critical");
        Assert.NotEqual(0, exitCode);
    }

    [Fact]
    public void EverySeverityTheRulesUse_HasItsOwnRoute()
    {
        var routes = List(Map(LoadYaml(AlertmanagerFile), AlertmanagerFile)["route"] is IDictionary<object, object> root ? root["routes"] : null, "routes")
            .SelectMany(r => List(Map(r, "route")["matchers"], "matchers").Cast<string>())
            .ToHashSet(StringComparer.Ordinal);
        foreach (var alert in Alerts(LoadYaml(RulesFile)))
        {
            var severity = Str(Sub(alert, "labels"), "severity");
            Assert.True(routes.Contains($"severity=\"{severity}\""), $"{Str(alert, "alert")}: no route for severity {severity}");
        }
    }

    [Fact]
    public void InhibitRules_NameAlertsOfTheRulesFile_AndRedisLossMutesTheHeartbeatAlerts()
    {
        var alertNames = Alerts(LoadYaml(RulesFile)).Select(a => Str(a, "alert")!).ToList();
        var inhibits = List(Map(LoadYaml(AlertmanagerFile), AlertmanagerFile)["inhibit_rules"], "inhibit_rules").Select(r => Map(r, "inhibit rule")).ToList();
        foreach (var rule in inhibits)
        {
            Assert.Contains("component", List(rule["equal"], "equal").Cast<string>());
            foreach (var matcher in List(rule["source_matchers"], "source_matchers").Concat(List(rule["target_matchers"], "target_matchers")).Cast<string>())
            {
                var m = Regex.Match(matcher, "^alertname(=~?)\"(.*)\"$");
                Assert.True(m.Success, "unexpected matcher " + matcher);
                var pattern = m.Groups[1].Value == "=" ? Regex.Escape(m.Groups[2].Value) : m.Groups[2].Value;
                Assert.True(alertNames.Any(n => Regex.IsMatch(n, $"^(?:{pattern})$")), $"{matcher} matches no alert of {RulesFile}");
            }
        }

        var redis = Assert.Single(inhibits, r => List(r["source_matchers"], "s").Cast<string>().Single() == "alertname=\"RedisConnectionLoss\"");
        var target = Regex.Match(List(redis["target_matchers"], "t").Cast<string>().Single(), "^alertname=~\"(.*)\"$").Groups[1].Value;
        foreach (var muted in new[] { "HeartbeatFailures", "HeartbeatFailuresEscalation", "HeartbeatFailuresEarlyWarning", "DeadCoordinatorDetected" })
        {
            Assert.Matches($"^(?:{target})$", muted);
        }

        Assert.DoesNotMatch($"^(?:{target})$", "TimeoutEvents");
        Assert.DoesNotMatch($"^(?:{target})$", "RedisConnectionLoss");
    }

    [Fact]
    public async Task RealAlertmanager_MutesTheAlertsTheInhibitRulesName()
    {
        await using var alertmanager = await RunningAlertmanager.StartAsync();
        await alertmanager.PostAsync(
            Alert("RedisConnectionLoss", "critical"),
            Alert("HeartbeatFailures", "critical"),
            Alert("HeartbeatFailuresEscalation", "high"),
            Alert("HeartbeatFailuresEarlyWarning", "warning"),
            Alert("DeadCoordinatorDetected", "warning", ("coordinator_id", "c9")),
            Alert("TimeoutEvents", "critical"),
            Alert("HighSignalLatencyEscalation", "high"),
            Alert("HighSignalLatency", "warning"),
            Alert("StuckCoordinator", "critical"),
            Alert("HighBlockingDuration", "warning"),
            Alert("HighBlockingCoordinators", "warning"),
            // Another component's heartbeat alert is not explained by cfn's Redis outage.
            Alert("HeartbeatFailures", "critical", ("component", "other")));

        string[] mutedNames = ["HeartbeatFailures", "HeartbeatFailuresEscalation", "HeartbeatFailuresEarlyWarning", "DeadCoordinatorDetected", "HighSignalLatency", "HighBlockingDuration"];

        // Alertmanager takes the posted alerts in asynchronously: wait until all are listed and the muted ones show it.
        var state = await alertmanager.StatesAsync(s => s.Count == 12 && mutedNames.All(m => s.GetValueOrDefault((m, "blocking-coordination")) == "suppressed"));
        Assert.Equal(12, state.Count);
        foreach (var muted in mutedNames)
        {
            Assert.True(state[(muted, "blocking-coordination")] == "suppressed", $"{muted} is {state[(muted, "blocking-coordination")]}, expected suppressed");
        }

        foreach (var active in new[] { "RedisConnectionLoss", "TimeoutEvents", "HighSignalLatencyEscalation", "StuckCoordinator", "HighBlockingCoordinators" })
        {
            Assert.True(state[(active, "blocking-coordination")] == "active", $"{active} is {state[(active, "blocking-coordination")]}, expected active");
        }

        Assert.Equal("active", state[("HeartbeatFailures", "other")]);
    }

    private static Dictionary<string, object> Alert(string name, string severity, params (string Name, string Value)[] extra)
    {
        var labels = new Dictionary<string, string> { ["alertname"] = name, ["severity"] = severity, ["component"] = "blocking-coordination" };
        foreach (var (label, value) in extra)
        {
            labels[label] = value;
        }

        return new Dictionary<string, object> { ["labels"] = labels };
    }

    /// <summary>prometheus-alertmanager (Debian's name; alertmanager elsewhere) on a free loopback port, clustering off.</summary>
    private sealed class RunningAlertmanager : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly string _storage;
        private readonly StringBuilder _log = new();
        private readonly HttpClient _http;

        private RunningAlertmanager(Process process, string storage, int port)
        {
            _process = process;
            _storage = storage;
            _http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/") };
            process.OutputDataReceived += (_, e) => { lock (_log) { _log.AppendLine(e.Data); } };
            process.ErrorDataReceived += (_, e) => { lock (_log) { _log.AppendLine(e.Data); } };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
        }

        public static async Task<RunningAlertmanager> StartAsync()
        {
            var binary = new[] { "/usr/bin/prometheus-alertmanager", "/usr/local/bin/alertmanager", "/usr/bin/alertmanager" }.FirstOrDefault(File.Exists)
                ?? throw new FileNotFoundException("no Alertmanager binary (apt-get install prometheus-alertmanager)");
            var storage = Directory.CreateTempSubdirectory("cfn-am-").FullName;
            var port = CfnRun.FreePort();
            var start = new ProcessStartInfo(binary)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
                WorkingDirectory = Root,
            };
            foreach (var arg in new[] { "--config.file=" + AlertmanagerFile, "--storage.path=" + storage, $"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=" })
            {
                start.ArgumentList.Add(arg);
            }

            var running = new RunningAlertmanager(Process.Start(start) ?? throw new InvalidOperationException("alertmanager did not start"), storage, port);
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (true)
            {
                try
                {
                    using var ready = await running._http.GetAsync(new Uri("-/ready", UriKind.Relative));
                    if (ready.IsSuccessStatusCode)
                    {
                        return running;
                    }
                }
                catch (HttpRequestException)
                {
                }

                if (running._process.HasExited || DateTime.UtcNow > deadline)
                {
                    var log = running.Log;
                    await running.DisposeAsync();
                    throw new InvalidOperationException("alertmanager did not become ready:\n" + log);
                }

                await Task.Delay(100);
            }
        }

        private string Log
        {
            get { lock (_log) { return _log.ToString(); } }
        }

        public async Task PostAsync(params Dictionary<string, object>[] alerts)
        {
            using var content = new StringContent(JsonSerializer.Serialize(alerts), Encoding.UTF8, "application/json");
            using var response = await _http.PostAsync(new Uri("api/v2/alerts", UriKind.Relative), content);
            Assert.True(response.IsSuccessStatusCode, $"POST alerts: {response.StatusCode} {await response.Content.ReadAsStringAsync()}\n{Log}");
        }

        /// <summary>status.state of each alert by (alertname, component), once <paramref name="done"/> holds or after 10 s.</summary>
        public async Task<Dictionary<(string, string), string>> StatesAsync(Func<Dictionary<(string, string), string>, bool> done)
        {
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (true)
            {
                using var document = JsonDocument.Parse(await _http.GetStringAsync(new Uri("api/v2/alerts", UriKind.Relative)));
                var states = document.RootElement.EnumerateArray().ToDictionary(
                    a => (a.GetProperty("labels").GetProperty("alertname").GetString()!, a.GetProperty("labels").GetProperty("component").GetString()!),
                    a => a.GetProperty("status").GetProperty("state").GetString()!);
                if (done(states) || DateTime.UtcNow > deadline)
                {
                    return states;
                }

                await Task.Delay(100);
            }
        }

        public async ValueTask DisposeAsync()
        {
            _http.Dispose();
            if (!_process.HasExited)
            {
                _process.Kill();
                await _process.WaitForExitAsync();
            }

            _process.Dispose();
            Directory.Delete(_storage, recursive: true);
        }
    }
}

using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Cfn.Tests.Infrastructure;

namespace Cfn.Tests.Dashboard;

/// <summary>
/// One real <c>cfn up</c> for the dashboard's browser tests (a class fixture: started once, shared by the class's tests):
/// its private redis-server, one swarm of two coordinators and two validators, deaths detected in seconds, and admin
/// rights only with the token (<c>CFN_ADMIN_LOOPBACK=false</c>), so that the page's actions are refused until the
/// operator types it in. The test's own admin calls (agent sessions, unblock, resume) carry the token.
/// </summary>
public sealed class DashboardUp : IAsyncLifetime
{
    public const string Secret = "dashboard-test-secret-0123456789abcdef0123456789ab";

    /// <summary>The admin token (at least 32 characters, D20).</summary>
    public const string AdminToken = "dashboard-admin-token-0123456789abcdef";

    public const int HeartbeatIntervalMs = 500;
    public const int StaleThresholdMs = 3000;
    public const int MonitorIntervalMs = 500;
    public const int MaxWarnings = 2;

    /// <summary>
    /// How long after its last heartbeat a coordinator is declared dead: the stale threshold plus one monitor interval per
    /// warning after the first (docs/configuration.md), plus one monitor interval for the pass that sees it.
    /// </summary>
    public static readonly TimeSpan DetectionTime = TimeSpan.FromMilliseconds(StaleThresholdMs + (MaxWarnings * MonitorIntervalMs));

    private CfnRun? _run;

    public CfnRun Run => _run ?? throw new InvalidOperationException("cfn up is not started");

    public int HttpPort { get; } = CfnRun.FreePort();

    /// <summary>The dashboard: <c>/</c> of cfn up.</summary>
    public string Url => $"http://127.0.0.1:{HttpPort}/";

    public HttpClient Api { get; private set; } = null!;

    /// <summary>The private redis-server of this run (for a <c>cfn serve</c> beside it and for redis-cli).</summary>
    internal UpRedis Redis { get; private set; } = null!;

    /// <summary>Detection settings shared by cfn up and any <c>cfn serve</c> the tests start beside it.</summary>
    public static Dictionary<string, string?> CommonEnvironment() => new()
    {
        ["BLOCKING_COORDINATION_SECRET"] = Secret,
        ["REDIS_URL"] = null,
        ["REDIS_HOST"] = null,
        ["HEARTBEAT_INTERVAL_MS"] = $"{HeartbeatIntervalMs}",
        ["HEARTBEAT_STALE_THRESHOLD_MS"] = $"{StaleThresholdMs}",
        ["HEARTBEAT_MONITOR_INTERVAL_MS"] = $"{MonitorIntervalMs}",
        ["HEARTBEAT_MAX_WARNINGS"] = $"{MaxWarnings}",
        ["BLOCKING_TIMEOUT_MS"] = "20000",
        ["VALIDATION_DURATION_MEDIAN_MS"] = "50",
        ["VALIDATION_DURATION_P95_MS"] = "200",
    };

    public async Task InitializeAsync()
    {
        var environment = CommonEnvironment();
        environment["CFN_ADMIN_LOOPBACK"] = "false";
        environment["CFN_ADMIN_TOKEN"] = AdminToken;
        // The stuck-wait and deadlock check every 2 s instead of 30 s: the test's deadlock is seen at once.
        environment["ACTIVITY_CHECK_INTERVAL_MS"] = "2000";
        // The dashboard's reader refreshes twice a second (default 1000 ms): the page follows the system closely.
        environment["DASHBOARD_REFRESH_MS"] = "500";
        _run = CfnRun.Start(["up", "--http-port", $"{HttpPort}", "--swarms", "1", "--coordinators", "2", "--validators", "2"], environment);
        await _run.WaitForLineAsync(l => l == "ready", TimeSpan.FromSeconds(90));
        Redis = UpRedis.Of(_run);
        Api = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{HttpPort}"), Timeout = TimeSpan.FromSeconds(120) };
    }

    /// <summary>A JSON request to cfn up with a bearer token (the admin token unless another is given); the status and the body.</summary>
    public Task<(HttpStatusCode Status, JsonElement Body)> CallAsync(HttpMethod method, string path, string? json = null, string? token = AdminToken) =>
        Api.SendJsonAsync(method, path, json, token);

    /// <summary>An HTTP agent session (docs/agents.md) for <paramref name="agentId"/>: an agent that waits, or never answers, as the test says.</summary>
    public async Task<AgentSession> OpenSessionAsync(string agentId, string swarmId, int leaseMs = 120_000)
    {
        var (status, body) = await CallAsync(HttpMethod.Post, "/api/agents/sessions",
            $$"""{"agentId":"{{agentId}}","swarmId":"{{swarmId}}","leaseMs":{{leaseMs.ToString(CultureInfo.InvariantCulture)}}}""");
        Assert.True(status == HttpStatusCode.Created, $"session for {agentId}: {(int)status} {body}");
        return new AgentSession(this, body.GetProperty("sessionId").GetString()!, body.GetProperty("token").GetString()!, agentId);
    }

    public async Task DisposeAsync()
    {
        Api?.Dispose();
        if (_run is null)
        {
            return;
        }

        if (!_run.HasExited)
        {
            await _run.SignalAsync("TERM");
            try
            {
                await _run.WaitForExitAsync(TimeSpan.FromSeconds(20));
            }
            catch (TimeoutException)
            {
                // killed by WaitForExitAsync; its private redis-server goes with the process tree
            }
        }

        await _run.DisposeAsync();
    }
}

/// <summary>An open HTTP agent session on <see cref="DashboardUp"/>; disposing it closes it (a graceful stop).</summary>
public sealed class AgentSession(DashboardUp up, string id, string token, string agentId) : IAsyncDisposable
{
    public string Id { get; } = id;

    public string AgentId { get; } = agentId;

    /// <summary><c>POST …/{sessionId}/{action}</c> with the session's own token.</summary>
    public Task<(HttpStatusCode Status, JsonElement Body)> ActAsync(string action, string json) =>
        up.CallAsync(HttpMethod.Post, $"/api/agents/sessions/{Id}/{action}", json, token);

    /// <summary>Sends a validation signal to <paramref name="to"/> and blocks until it is ACKed (or the wait ends otherwise).</summary>
    public Task<(HttpStatusCode Status, JsonElement Body)> SendAndWaitAsync(string to, int timeoutMs) =>
        ActAsync("send", $$"""{"to":"{{to}}","type":"validation","payload":{"n":1},"wait":true,"timeoutMs":{{timeoutMs.ToString(CultureInfo.InvariantCulture)}}}""");

    public async ValueTask DisposeAsync()
    {
        try
        {
            await up.CallAsync(HttpMethod.Delete, $"/api/agents/sessions/{Id}", token: token);
        }
        catch (HttpRequestException)
        {
            // cfn up is gone already
        }
    }
}

using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Cfn.Coordination.Tests.Infrastructure;

namespace Cfn.Coordination.Tests.Redis;

/// <summary>
/// The monitoring runbook's redis-cli | jq commands (SPEC §5 #15, #60, #65; §7.14 items 1 and 2), run verbatim through
/// bash against the test's redis-server. Only the key pattern is narrowed to this test's coordinator, because other
/// tests share the server.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed partial class RunbookCommandTests(RedisServer server)
{
    [Fact]
    public async Task Tools_JqBashRedisCli_AreInstalled()
    {
        // scripts/test.sh installs them; the runbook tests below are meaningless without them, so they are not skipped.
        var result = await Probe.ShellAsync(server.Endpoint, "command -v jq && command -v redis-cli && command -v date && command -v sed");

        Assert.True(result.ExitCode == 0, result.ToString());
    }

    [Fact]
    public async Task Runbook60_HeartbeatAge_JqSucceedsAndAgeIsSmall()
    {
        await using var h = Harness.Create(server);
        var c = await h.StartAsync();

        var result = await Probe.ShellAsync(
            server.Endpoint,
            $$"""
            redis-cli --scan --pattern "blocking:heartbeat:{{c.Id}}" | \
              head -5 | while read key; do
                redis-cli get $key | jq '{coordinator: .coordinatorId, age: (now - (.timestamp / 1000))}'
              done
            """);

        Assert.True(result.ExitCode == 0 && result.Stderr.Length == 0, result.ToString());
        using var output = JsonDocument.Parse(result.Stdout);
        Assert.Equal(c.Id, output.RootElement.GetProperty("coordinator").GetString());
        Assert.InRange(output.RootElement.GetProperty("age").GetDouble(), -5, 30);
    }

    [Fact]
    public async Task Runbook60_SingleKeyForm_PrintsAgeOfOurCoordinator()
    {
        await using var h = Harness.Create(server);
        var c = await h.StartAsync();

        var result = await Probe.ShellAsync(
            server.Endpoint,
            $"redis-cli get blocking:heartbeat:{c.Id} | jq -c '{{coordinator: .coordinatorId, age: (now - (.timestamp / 1000))}}'");

        Assert.True(result.ExitCode == 0 && result.Stderr.Length == 0, result.ToString());
        using var output = JsonDocument.Parse(result.Stdout);
        Assert.Equal(c.Id, output.RootElement.GetProperty("coordinator").GetString());
        Assert.InRange(output.RootElement.GetProperty("age").GetDouble(), -5, 30);
    }

    [Fact]
    public async Task LegacyCleanupRegex_OnK1_ExtractsTheTimestamp()
    {
        // The bash cleanup fallback's extraction (SPEC K1): grep -oP '(?<="timestamp":)\d+'.
        await using var h = Harness.Create(server);
        var c = await h.StartAsync();

        var result = await Probe.ShellAsync(server.Endpoint, $"redis-cli get blocking:heartbeat:{c.Id} | grep -oP '(?<=\"timestamp\":)\\d+'");

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(c.Heartbeats.LastSentAt.ToString(CultureInfo.InvariantCulture), result.Stdout.Trim());
    }

    [Fact]
    public async Task Runbook15_ActivityAge_PrintsSmallIntegerAge()
    {
        await using var h = Harness.Create(server);
        var c = await h.StartAsync();

        var result = await Probe.ShellAsync(
            server.Endpoint,
            $$"""
            redis-cli --scan --pattern "coordinator:activity:{{c.Id}}" | \
              while read key; do
                ACTIVITY=$(redis-cli get $key)
                LAST=$(echo $ACTIVITY | jq -r .lastActivity)
                AGE=$(($(date +%s) - ($LAST / 1000)))
                COORD=$(echo $key | sed 's/coordinator:activity://')
                echo "$COORD: ${AGE}s since last activity"
              done | sort -t: -k2 -rn | head -10
            """);

        Assert.True(result.ExitCode == 0 && result.Stderr.Length == 0, result.ToString());
        var match = ActivityLineRegex().Match(result.Stdout.Trim());
        Assert.True(match.Success, result.ToString());
        Assert.Equal(c.Id, match.Groups["coord"].Value);
        Assert.InRange(int.Parse(match.Groups["age"].Value, CultureInfo.InvariantCulture), -2, 30);
    }

    [Fact]
    public async Task Runbook65_IdleCoordinator_WaitsForNone()
    {
        await using var h = Harness.Create(server);
        var c = await h.StartAsync();

        var result = await Probe.ShellAsync(server.Endpoint, WaitingForCommand(c.Id));

        Assert.True(result.ExitCode == 0 && result.Stderr.Length == 0, result.ToString());
        Assert.Equal($"{c.Id} waits for none", result.Stdout.Trim());
    }

    [Fact]
    public async Task Runbook65_BlockedCoordinator_WaitsForCommaSeparatedPeers()
    {
        await using var h = Harness.Create(server);
        var c = await h.StartAsync();
        var peerA = TestIds.New("peer-a");
        var peerB = TestIds.New("peer-b");
        using var cts = new CancellationTokenSource();
        var waiting = c.Waiter.WaitForAcksAsync([peerA, peerB], TestIds.New("sig"), TimeSpan.FromMinutes(5), cts.Token);
        try
        {
            await PollUntilBlockingAsync(h, c.Id);

            var result = await Probe.ShellAsync(server.Endpoint, WaitingForCommand(c.Id));

            Assert.True(result.ExitCode == 0 && result.Stderr.Length == 0, result.ToString());
            Assert.Equal($"{c.Id} waits for {peerA},{peerB}", result.Stdout.Trim());
        }
        finally
        {
            await cts.CancelAsync();
            await waiting;
        }

        var after = await Probe.ShellAsync(server.Endpoint, WaitingForCommand(c.Id));
        Assert.Equal($"{c.Id} waits for none", after.Stdout.Trim());
    }

    private static string WaitingForCommand(string id) =>
        $$"""
        redis-cli --scan --pattern "coordinator:activity:{{id}}" | \
          while read key; do
            ACTIVITY=$(redis-cli get $key)
            COORD=$(echo $key | sed 's/coordinator:activity://')
            WAITING_FOR=$(echo $ACTIVITY | jq -r '.waitingFor // "none"')
            echo "$COORD waits for $WAITING_FOR"
          done
        """;

    private static Task PollUntilBlockingAsync(Harness h, string id) => EventuallyAsync(async () =>
    {
        var raw = (string?)await h.Database.StringGetAsync("coordinator:activity:" + id);
        if (raw is null)
        {
            return false;
        }

        using var document = JsonDocument.Parse(raw);
        return document.RootElement.GetProperty("status").GetString() == "blocking";
    }, $"coordinator {id} never showed status blocking in K7", TimeSpan.FromSeconds(20), pollMs: 25);

    [GeneratedRegex(@"^(?<coord>[A-Za-z0-9_-]+): (?<age>-?\d+)s since last activity$")]
    private static partial Regex ActivityLineRegex();
}

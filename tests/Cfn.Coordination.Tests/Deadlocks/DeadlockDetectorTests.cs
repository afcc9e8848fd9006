using System.Diagnostics;
using System.Reflection;
using System.Text.Json;
using Cfn.Coordination.Acks;
using Cfn.Coordination.Activity;
using Cfn.Coordination.Deadlocks;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Tests.Infrastructure;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using StackExchange.Redis;

namespace Cfn.Coordination.Tests.Deadlocks;

/// <summary>
/// <see cref="DeadlockDetector"/> against the real redis-server: K7 records read in MGET batches, cycles reported and
/// logged once as <c>deadlock detected: A -> B -> A</c> (SPEC §5 #65, L18), bad data skipped and counted.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class DeadlockDetectorTests(RedisServer server)
{
    private const string DeadlockLine = "deadlock detected: ";

    [Fact]
    public async Task DetectAsync_PairCycleWithTailAndIdle_FindsOnlyThePairAndLogsItOnce()
    {
        await using var h = Harness.Create(server);
        var (a, b, c, d) = (TestIds.New("a"), TestIds.New("b"), TestIds.New("c"), TestIds.New("d"));
        await WriteAsync(h, a, "blocking", b);
        await WriteAsync(h, b, "blocking", a);
        await WriteAsync(h, c, "blocking", a);
        await WriteAsync(h, d, "idle", null);
        var detector = Detector(h);

        var snapshot = await detector.DetectAsync([a, b, c, d]);

        var deadlock = Assert.Single(snapshot.Deadlocks);
        var (low, high) = Sorted(a, b);
        Assert.Equal([low, high], deadlock.Coordinators);
        Assert.Equal([low, high, low], deadlock.Path);
        Assert.Equal(3, snapshot.BlockingCoordinators);
        Assert.Equal([$"{DeadlockLine}{low} -> {high} -> {low}"], DeadlockLines(h));
        var line = Assert.Single(h.Logs.GetSnapshot(), r => r.Message.StartsWith(DeadlockLine, StringComparison.Ordinal));
        Assert.Equal(LogLevel.Error, line.Level);

        var again = await detector.DetectAsync([a, b, c, d]);

        Assert.Equal(deadlock, Assert.Single(again.Deadlocks));
        Assert.Single(DeadlockLines(h)); // the persisting cycle is not logged again
        Assert.Equal(0, detector.MalformedValues);
    }

    [Fact]
    public async Task DetectAsync_CycleDisappearsAndComesBack_LoggedAgain()
    {
        await using var h = Harness.Create(server);
        var (a, b) = (TestIds.New("a"), TestIds.New("b"));
        await WriteAsync(h, a, "blocking", b);
        await WriteAsync(h, b, "blocking", a);
        var detector = Detector(h);

        Assert.Single((await detector.DetectAsync([a, b])).Deadlocks);
        await WriteAsync(h, b, "idle", null);
        Assert.Empty((await detector.DetectAsync([a, b])).Deadlocks);
        await WriteAsync(h, b, "blocking", a);
        Assert.Single((await detector.DetectAsync([a, b])).Deadlocks);

        Assert.Equal(2, DeadlockLines(h).Count);
        Assert.Equal(DeadlockLines(h)[0], DeadlockLines(h)[1]);
    }

    [Fact]
    public async Task DetectAsync_CycleGrowsANewMember_LoggedAsNewDeadlock()
    {
        await using var h = Harness.Create(server);
        var (a, b, c) = (TestIds.New("a"), TestIds.New("b"), TestIds.New("c"));
        await WriteAsync(h, a, "blocking", b);
        await WriteAsync(h, b, "blocking", a);
        var detector = Detector(h);
        await detector.DetectAsync([a, b, c]);

        await WriteAsync(h, b, "blocking", $"{a},{c}");
        await WriteAsync(h, c, "blocking", a);
        var snapshot = await detector.DetectAsync([a, b, c]);

        Assert.Equal(new[] { a, b, c }.Order(StringComparer.Ordinal), Assert.Single(snapshot.Deadlocks).Coordinators);
        Assert.Equal(2, DeadlockLines(h).Count);
    }

    [Fact]
    public async Task DetectAsync_TwoCoordinatorsWaitingForEachOther_OneDeadlockUntilTheWaitsEnd()
    {
        await using var h = Harness.Create(server);
        var a = await h.StartAsync();
        var b = await h.StartAsync();
        var detector = Detector(h);
        using var cts = new CancellationTokenSource();
        var waitA = a.Waiter.WaitForAcksAsync([b.Id], TestIds.New("sig"), TimeSpan.FromSeconds(30), cts.Token);
        var waitB = b.Waiter.WaitForAcksAsync([a.Id], TestIds.New("sig"), TimeSpan.FromSeconds(30), cts.Token);
        DeadlockSnapshot during;
        try
        {
            await PollUntilBlockingAsync(h, a.Id, b.Id);

            during = await detector.DetectAsync([a.Id, b.Id]);
        }
        finally
        {
            await cts.CancelAsync();
            Assert.Equal(AckWaitStatus.Cancelled, (await waitA).Status);
            Assert.Equal(AckWaitStatus.Cancelled, (await waitB).Status);
        }

        var deadlock = Assert.Single(during.Deadlocks);
        var (low, high) = Sorted(a.Id, b.Id);
        Assert.Equal([low, high], deadlock.Coordinators);
        Assert.Equal($"{low} -> {high} -> {low}", deadlock.Describe());
        Assert.Equal(2, during.BlockingCoordinators);
        Assert.Equal([$"{DeadlockLine}{low} -> {high} -> {low}"], DeadlockLines(h));

        var after = await detector.DetectAsync([a.Id, b.Id]);

        Assert.Empty(after.Deadlocks);
        Assert.Equal(0, after.BlockingCoordinators);
        Assert.Single(DeadlockLines(h));
    }

    [Fact]
    public async Task DetectAsync_MalformedValues_SkippedCountedLoggedOthersAnalysed()
    {
        await using var h = Harness.Create(server);
        var (a, b) = (TestIds.New("a"), TestIds.New("b"));
        var (broken, incomplete, wrongType, list, missing) =
            (TestIds.New("broken"), TestIds.New("incomplete"), TestIds.New("wrongtype"), TestIds.New("list"), TestIds.New("missing"));
        await WriteAsync(h, a, "blocking", b);
        await WriteAsync(h, b, "blocking", a);
        await h.Database.StringSetAsync("coordinator:activity:" + broken, "{not json", TimeSpan.FromMinutes(5));
        await h.Database.StringSetAsync("coordinator:activity:" + incomplete, $$"""{"coordinatorId":"{{incomplete}}"}""", TimeSpan.FromMinutes(5));
        await h.Database.StringSetAsync("coordinator:activity:" + wrongType,
            $$"""{"coordinatorId":"{{wrongType}}","swarmId":"s","lastActivity":1,"status":"blocking","waitingFor":7}""", TimeSpan.FromMinutes(5));
        await h.Database.ListRightPushAsync("coordinator:activity:" + list, "not a string key"); // MGET reads it as nil
        await h.Database.KeyExpireAsync("coordinator:activity:" + list, TimeSpan.FromMinutes(5));
        var detector = Detector(h);

        var snapshot = await detector.DetectAsync([broken, a, incomplete, b, wrongType, list, missing]);

        var (low, high) = Sorted(a, b);
        Assert.Equal([low, high], Assert.Single(snapshot.Deadlocks).Coordinators);
        Assert.Equal(2, snapshot.BlockingCoordinators);
        Assert.Equal(3, detector.MalformedValues);
        var warnings = h.Logs.GetSnapshot()
            .Where(r => r.Level == LogLevel.Warning && r.Message.StartsWith("Malformed activity record key=", StringComparison.Ordinal))
            .Select(r => r.Message)
            .ToList();
        Assert.Equal(3, warnings.Count);
        Assert.Contains(warnings, m => m.StartsWith($"Malformed activity record key=coordinator:activity:{broken} : ", StringComparison.Ordinal));
        Assert.Contains(warnings, m => m.StartsWith($"Malformed activity record key=coordinator:activity:{incomplete} : ", StringComparison.Ordinal));
        Assert.Contains(warnings, m => m.StartsWith($"Malformed activity record key=coordinator:activity:{wrongType} : ", StringComparison.Ordinal));

        await detector.DetectAsync([broken]);
        Assert.Equal(4, detector.MalformedValues); // a counter, not a per-pass figure
    }

    [Fact]
    public async Task DetectAsync_InvalidAndDuplicateIds_SkippedWithoutThrowing()
    {
        await using var h = Harness.Create(server);
        var (a, b) = (TestIds.New("a"), TestIds.New("b"));
        await WriteAsync(h, a, "blocking", b);
        await WriteAsync(h, b, "blocking", a);
        var detector = Detector(h);

        var snapshot = await detector.DetectAsync(["bad:id", a, "", a, b, b, "x*"]);

        Assert.Single(snapshot.Deadlocks);
        Assert.Equal(2, snapshot.BlockingCoordinators);
        Assert.Equal(3, h.Logs.GetSnapshot().Count(r => r.Message.StartsWith("Deadlock check skipped an invalid coordinator ID", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task DetectAsync_RecordFieldNamesAnotherCoordinator_KeyIdWins()
    {
        await using var h = Harness.Create(server);
        var (a, b) = (TestIds.New("a"), TestIds.New("b"));
        await h.Database.StringSetAsync("coordinator:activity:" + a, Json.Serialize(Record("someone-else", "blocking", b)), TimeSpan.FromMinutes(5));
        await WriteAsync(h, b, "blocking", a);

        var snapshot = await Detector(h).DetectAsync([a, b]);

        var (low, high) = Sorted(a, b);
        Assert.Equal([low, high], Assert.Single(snapshot.Deadlocks).Coordinators);
    }

    [Fact]
    public async Task DetectAsync_ThousandsOfIds_MgetBatchesOfAtMost500()
    {
        await using var h = Harness.Create(server);
        var prefix = TestIds.New("bulk");
        var ids = Enumerable.Range(0, 1203).Select(i => $"{prefix}-{i:D4}").ToList();
        // The cycle's members sit in the first and the last batch; every other key is missing.
        await WriteAsync(h, ids[3], "blocking", ids[1100]);
        await WriteAsync(h, ids[1100], "blocking", ids[1202]);
        await WriteAsync(h, ids[1202], "blocking", ids[3]);
        var counting = CountingDatabase.Wrap(h.Database);
        var detector = new DeadlockDetector(counting.Database, h.LoggerFactory.CreateLogger("Cfn.Coordination.Deadlocks"), TimeProvider.System);

        var snapshot = await detector.DetectAsync(ids);

        Assert.Equal([500, 500, 203], counting.MgetSizes);
        Assert.Equal(3, snapshot.BlockingCoordinators);
        Assert.Equal($"{ids[3]} -> {ids[1100]} -> {ids[1202]} -> {ids[3]}", Assert.Single(snapshot.Deadlocks).Describe());
    }

    [Fact]
    public async Task DetectAsync_NoIds_EmptySnapshotWithoutRedisCalls()
    {
        await using var h = Harness.Create(server);
        var counting = CountingDatabase.Wrap(h.Database);
        var detector = new DeadlockDetector(counting.Database, h.LoggerFactory.CreateLogger("x"), TimeProvider.System);

        var snapshot = await detector.DetectAsync([]);

        Assert.Empty(snapshot.Deadlocks);
        Assert.Equal(0, snapshot.BlockingCoordinators);
        Assert.Empty(counting.MgetSizes);
    }

    [Fact]
    public async Task DetectAsync_Timestamp_FromTheTimeProvider()
    {
        await using var h = Harness.Create(server);
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_123));
        var detector = new DeadlockDetector(h.Database, h.LoggerFactory.CreateLogger("x"), time);

        var snapshot = await detector.DetectAsync([TestIds.New("nobody")]);

        Assert.Equal(1_700_000_000_123, snapshot.TimestampMs);
    }

    [Fact]
    public void Detect_RecordsAlreadyRead_LogsNewCyclesOnly()
    {
        var logs = new Microsoft.Extensions.Logging.Testing.FakeLogger();
        var detector = new DeadlockDetector(ThrowingDatabase.Create(), logs, TimeProvider.System);
        ActivityRecord[] cycle = [Record("A", "blocking", "B"), Record("B", "blocking", "A")];

        detector.Detect(cycle);
        detector.Detect(cycle);
        detector.Detect([.. cycle, Record("X", "blocking", "X")]);

        Assert.Equal(["deadlock detected: A -> B -> A", "deadlock detected: X -> X"], logs.Collector.GetSnapshot().Select(r => r.Message));
    }

    [Fact]
    public async Task Runbook65_RealDeadlock_PrintsEachWaitsForTheOther()
    {
        await using var h = Harness.Create(server);
        var prefix = TestIds.New("rb65");
        var a = await h.StartAsync(id: prefix + "-a");
        var b = await h.StartAsync(id: prefix + "-b");
        using var cts = new CancellationTokenSource();
        var waitA = a.Waiter.WaitForAcksAsync([b.Id], TestIds.New("sig"), TimeSpan.FromSeconds(30), cts.Token);
        var waitB = b.Waiter.WaitForAcksAsync([a.Id], TestIds.New("sig"), TimeSpan.FromSeconds(30), cts.Token);
        ShellResult result;
        DeadlockSnapshot snapshot;
        try
        {
            await PollUntilBlockingAsync(h, a.Id, b.Id);

            // SPEC §5 #65 verbatim, with the pattern narrowed to this test's coordinators.
            result = await Probe.ShellAsync(
                server.Endpoint,
                $$"""
                redis-cli --scan --pattern "coordinator:activity:{{prefix}}-*" | \
                  while read key; do
                    ACTIVITY=$(redis-cli get $key)
                    COORD=$(echo $key | sed 's/coordinator:activity://')
                    WAITING_FOR=$(echo $ACTIVITY | jq -r '.waitingFor // "none"')
                    echo "$COORD waits for $WAITING_FOR"
                  done | sort
                """);
            snapshot = await Detector(h).DetectAsync([a.Id, b.Id]);
        }
        finally
        {
            await cts.CancelAsync();
            await Task.WhenAll(waitA, waitB);
        }

        Assert.True(result.ExitCode == 0 && result.Stderr.Length == 0, result.ToString());
        Assert.Equal([$"{a.Id} waits for {b.Id}", $"{b.Id} waits for {a.Id}"], result.Stdout.Trim().Split('\n'));
        Assert.Equal($"{a.Id} -> {b.Id} -> {a.Id}", Assert.Single(snapshot.Deadlocks).Describe());
    }

    private static DeadlockDetector Detector(Harness h) =>
        new(h.Database, h.LoggerFactory.CreateLogger("Cfn.Coordination.Deadlocks"), TimeProvider.System);

    private static List<string> DeadlockLines(Harness h) =>
        h.Messages.Where(m => m.StartsWith(DeadlockLine, StringComparison.Ordinal)).ToList();

    private static (string Low, string High) Sorted(string x, string y) =>
        string.CompareOrdinal(x, y) < 0 ? (x, y) : (y, x);

    private static ActivityRecord Record(string id, string status, string? waitingFor) => new()
    {
        CoordinatorId = id,
        SwarmId = "swarm-test",
        LastActivity = 1_700_000_000_000,
        Status = status,
        WaitingFor = waitingFor,
        WaitingForSignal = waitingFor is null ? null : "sig-1",
    };

    private static async Task WriteAsync(Harness h, string id, string status, string? waitingFor) =>
        Assert.True(await h.Database.StringSetAsync(
            "coordinator:activity:" + id, Json.Serialize(Record(id, status, waitingFor)), TimeSpan.FromMinutes(5)));

    private static Task PollUntilBlockingAsync(Harness h, params string[] ids) => EventuallyAsync(async () =>
    {
        foreach (var id in ids)
        {
            var raw = (string?)await h.Database.StringGetAsync("coordinator:activity:" + id);
            if (raw is null)
            {
                return false;
            }

            using var document = JsonDocument.Parse(raw);
            if (document.RootElement.GetProperty("status").GetString() != "blocking")
            {
                return false;
            }
        }

        return true;
    }, $"coordinators {string.Join(", ", ids)} never all showed status blocking in K7", TimeSpan.FromSeconds(20), pollMs: 25);

    /// <summary>An <see cref="IDatabase"/> that forwards to the real one and records the key count of every MGET.</summary>
    public class CountingDatabase : DispatchProxy
    {
        private IDatabase _inner = null!;

        public IDatabase Database { get; private set; } = null!;

        public List<int> MgetSizes { get; } = [];

        public static CountingDatabase Wrap(IDatabase inner)
        {
            var proxy = DispatchProxy.Create<IDatabase, CountingDatabase>();
            var self = (CountingDatabase)(object)proxy;
            self._inner = inner;
            self.Database = proxy;
            return self;
        }

        protected override object? Invoke(MethodInfo? targetMethod, object?[]? args)
        {
            if (targetMethod!.Name is nameof(IDatabase.StringGetAsync) or nameof(IDatabase.StringGet) && args?[0] is RedisKey[] keys)
            {
                lock (MgetSizes)
                {
                    MgetSizes.Add(keys.Length);
                }
            }

            try
            {
                return targetMethod.Invoke(_inner, args);
            }
            catch (TargetInvocationException e) when (e.InnerException is not null)
            {
                throw e.InnerException;
            }
        }
    }

    /// <summary>An <see cref="IDatabase"/> that fails on any use: proves <see cref="DeadlockDetector.Detect"/> reads nothing.</summary>
    public class ThrowingDatabase : DispatchProxy
    {
        public static IDatabase Create() => DispatchProxy.Create<IDatabase, ThrowingDatabase>();

        protected override object? Invoke(MethodInfo? targetMethod, object?[]? args) =>
            throw new InvalidOperationException($"unexpected Redis call {targetMethod?.Name}");
    }
}

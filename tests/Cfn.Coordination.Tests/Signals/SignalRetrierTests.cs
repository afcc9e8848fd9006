using System.Text.Json;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Tests.Infrastructure;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Cfn.Coordination.Tests.Signals;

/// <summary>Sender-side retry (SPEC §2.7, K5, K6, L10) on a dedicated database (10), flushed at start.</summary>
[Collection(RedisCollection.Name)]
public sealed class SignalRetrierTests(RedisServer server)
{
    private static SignalRetryOptions Fast(int ackTimeoutMs = 300, int maxRetries = 3) => new()
    {
        AckTimeout = TimeSpan.FromMilliseconds(ackTimeoutMs),
        MaxRetries = maxRetries,
        Backoff = [TimeSpan.FromMilliseconds(20), TimeSpan.FromMilliseconds(40)],
    };

    /// <summary>Reads (and so ACKs) the receiver's inbox in the background until disposed; counts what it got.</summary>
    private sealed class Reader : IAsyncDisposable
    {
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _loop;
        private int _count;

        public Reader(Coordinator receiver) => _loop = Task.Run(async () =>
        {
            try
            {
                await foreach (var _ in receiver.Inbox.ReadAllAsync(_stop.Token))
                {
                    Interlocked.Increment(ref _count);
                }
            }
            catch (OperationCanceledException)
            {
                // stopped
            }
        });

        public int Count => Volatile.Read(ref _count);

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            await _loop;
            _stop.Dispose();
        }
    }

    [Fact]
    public async Task SendWithRetry_SignalLostAfterFirstSend_RedeliveredAndAckedOnSecondAttempt()
    {
        await using var h = Harness.Create(server);
        await using var db = await DedicatedDatabase.CreateAsync(server, h, DedicatedDatabase.SignalRetryTests);
        var sender = await db.StartAsync(h, TestIds.New("snd"), "swarm-retry");
        var receiver = await db.StartAsync(h, TestIds.New("rcv"), "swarm-retry");
        var retrier = new SignalRetrier(sender, Fast(ackTimeoutMs: 1500));

        var retry = retrier.SendWithRetryAsync(receiver.Id, SignalTypes.Completion, 4, JsonDocument.Parse("{\"phase\":\"p\"}").RootElement);
        // The first delivery lands in the inbox; then it is lost (as when Redis loses it or the inbox is cleaned).
        Assert.True(await EventuallyAsync(async () => await db.Database.StreamLengthAsync(Keys.Inbox(receiver.Id)) == 1,
            TimeSpan.FromSeconds(5)));
        await db.Database.KeyDeleteAsync([Keys.Inbox(receiver.Id), Keys.Signal(receiver.Id)]);
        await using var reader = new Reader(receiver);
        var result = await retry;

        Assert.True(result.Success);
        Assert.Equal(SignalRetryStatus.Acknowledged, result.Status);
        Assert.Equal(2, result.Attempts);
        Assert.Equal(receiver.Id, result.Ack!.CoordinatorId);
        Assert.Equal("ACK not received within 1500ms timeout", result.LastError);
        Assert.StartsWith($"{sender.Id}:{receiver.Id}:completion:4:", result.SignalId, StringComparison.Ordinal);
        Assert.True(await db.Database.KeyExistsAsync(Keys.Ack(receiver.Id, result.SignalId)));
        for (var attempt = 1; attempt <= 2; attempt++)
        {
            var key = Keys.RetryAttempt(result.SignalId, attempt);
            using var k5 = JsonDocument.Parse((string)(await db.Database.StringGetAsync(key))!);
            Assert.Equal(attempt, k5.RootElement.GetProperty("attempt").GetInt32());
            Assert.Equal(sender.Id, k5.RootElement.GetProperty("coordinatorId").GetString());
            Assert.Equal(result.SignalId, k5.RootElement.GetProperty("signalId").GetString());
            Assert.True(k5.RootElement.GetProperty("timestamp").GetInt64() > 0);
            var ttl = await db.Database.KeyTimeToLiveAsync(key);
            Assert.InRange(ttl!.Value.TotalSeconds, 590, 600);
        }

        Assert.False(await db.Database.KeyExistsAsync(Keys.RetryAttempt(result.SignalId, 3)));
        Assert.False(await db.Database.KeyExistsAsync(Keys.RetryFailed(result.SignalId)));
        Assert.Single(RecoveryKit.Lines(h, "Signal retry attempt failed", result.SignalId));
        var success = Assert.Single(RecoveryKit.Lines(h, "Signal retry successful", result.SignalId));
        Assert.Equal(LogLevel.Information, success.Level);
        Assert.Single(RecoveryKit.Lines(h, "Signal sent successfully", result.SignalId, "redelivery=True"));
        Assert.Equal(1, reader.Count); // the same message, delivered to the application once
        // The first attempt's ACK wait timed out, but the signal was delivered: it did not fail.
        Assert.Equal(0, h.Metrics.SignalsFailed.WithLabels(sender.Id, SignalTypes.Completion, "ack_timeout").Value);
    }

    [Fact]
    public async Task SendWithRetry_ReceiverNeverAcks_K6IndexMetricAndLogs()
    {
        await using var h = Harness.Create(server);
        await using var db = await DedicatedDatabase.CreateAsync(server, h, DedicatedDatabase.SignalRetryTests);
        var sender = await db.StartAsync(h, TestIds.New("snd"), "swarm-retry");
        var receiver = await db.StartAsync(h, TestIds.New("rcv"), "swarm-retry");
        var retrier = new SignalRetrier(sender, Fast(ackTimeoutMs: 100, maxRetries: 2));

        var result = await retrier.SendWithRetryAsync(receiver.Id, SignalTypes.Validation, 7);

        Assert.False(result.Success);
        Assert.Equal(SignalRetryStatus.Exhausted, result.Status);
        Assert.Equal(3, result.Attempts);
        using var k6 = JsonDocument.Parse((string)(await db.Database.StringGetAsync(Keys.RetryFailed(result.SignalId)))!);
        var record = k6.RootElement;
        Assert.Equal(result.SignalId, record.GetProperty("signalId").GetString());
        Assert.Equal(sender.Id, record.GetProperty("coordinatorId").GetString());
        Assert.Equal(receiver.Id, record.GetProperty("receiverId").GetString());
        Assert.Equal("validation", record.GetProperty("signalType").GetString());
        Assert.Equal(7, record.GetProperty("iteration").GetInt32());
        Assert.Equal(3, record.GetProperty("attempts").GetInt32());
        Assert.True(record.GetProperty("timestamp").GetInt64() > 0);
        Assert.Equal("ACK not received within 100ms timeout", record.GetProperty("lastError").GetString());
        var ttl = await db.Database.KeyTimeToLiveAsync(Keys.RetryFailed(result.SignalId));
        Assert.InRange(ttl!.Value.TotalSeconds, 3590, 3600);
        Assert.NotNull(await db.Database.SortedSetScoreAsync(Keys.RetryFailedIndex(sender.Id), result.SignalId));
        Assert.NotNull(await db.Database.KeyTimeToLiveAsync(Keys.RetryFailedIndex(sender.Id)));
        // Once for the signal, not once per attempt's timed-out ACK wait (3 attempts).
        Assert.Equal(1, h.Metrics.SignalsFailed.WithLabels(sender.Id, "validation", "ack_timeout").Value);
        for (var attempt = 1; attempt <= 3; attempt++)
        {
            Assert.True(await db.Database.KeyExistsAsync(Keys.RetryAttempt(result.SignalId, attempt)));
        }

        Assert.Equal(3, RecoveryKit.Lines(h, "Signal retry attempt failed", result.SignalId).Count);
        Assert.All(RecoveryKit.Lines(h, "Signal retry attempt failed", result.SignalId), l => Assert.Equal(LogLevel.Warning, l.Level));
        var exhausted = Assert.Single(RecoveryKit.Lines(h, "Signal retry exhausted all attempts", result.SignalId));
        Assert.Equal(LogLevel.Error, exhausted.Level);
        Assert.Empty(RecoveryKit.Lines(h, "Signal retry successful", result.SignalId));
        // The signal was still waiting in the inbox: re-sends woke the receiver instead of piling up copies.
        Assert.Equal(1, await db.Database.StreamLengthAsync(Keys.Inbox(receiver.Id)));
        Assert.Equal(2, RecoveryKit.Lines(h, "receiver woken again", result.SignalId).Count);
    }

    [Fact]
    public async Task RetryFailed_OneReceiverBackOneNot_ResendsDeletesAckedRecordKeepsOther()
    {
        await using var h = Harness.Create(server);
        await using var db = await DedicatedDatabase.CreateAsync(server, h, DedicatedDatabase.SignalRetryTests);
        var sender = await db.StartAsync(h, TestIds.New("snd"), "swarm-retry");
        var back = await db.StartAsync(h, TestIds.New("rcv"), "swarm-retry");
        var silent = await db.StartAsync(h, TestIds.New("rcv"), "swarm-retry");
        var retrier = new SignalRetrier(sender, Fast(ackTimeoutMs: 100, maxRetries: 0));
        var toBack = await retrier.SendWithRetryAsync(back.Id, SignalTypes.Completion, 1);
        var toSilent = await retrier.SendWithRetryAsync(silent.Id, SignalTypes.Completion, 1);
        Assert.False(toBack.Success);
        Assert.False(toSilent.Success);
        // The returning receiver lost its inbox meanwhile (e.g. it was cleaned up): the re-send must deliver again.
        await db.Database.KeyDeleteAsync([Keys.Inbox(back.Id), Keys.Signal(back.Id)]);
        await using var reader = new Reader(back);

        var summary = await new SignalRetrier(sender, Fast(ackTimeoutMs: 2000)).RetryFailedAsync();

        Assert.Equal(new RetryFailedSummary(2, 1, 1), summary);
        Assert.False(await db.Database.KeyExistsAsync(Keys.RetryFailed(toBack.SignalId)));
        Assert.Null(await db.Database.SortedSetScoreAsync(Keys.RetryFailedIndex(sender.Id), toBack.SignalId));
        Assert.True(await db.Database.KeyExistsAsync(Keys.Ack(back.Id, toBack.SignalId)));
        Assert.Equal(1, reader.Count);
        using var kept = JsonDocument.Parse((string)(await db.Database.StringGetAsync(Keys.RetryFailed(toSilent.SignalId)))!);
        Assert.Equal(2, kept.RootElement.GetProperty("attempts").GetInt32());
        Assert.True(await db.Database.KeyExistsAsync(Keys.RetryAttempt(toBack.SignalId, 2)));
        Assert.Single(RecoveryKit.Lines(h, "Signal retry successful", toBack.SignalId));

        await db.Database.KeyDeleteAsync(Keys.RetryFailed(toSilent.SignalId)); // expired
        Assert.Equal(new RetryFailedSummary(0, 0, 0), await retrier.RetryFailedAsync());
        Assert.Equal(0, await db.Database.SortedSetLengthAsync(Keys.RetryFailedIndex(sender.Id)));
    }

    [Fact]
    public async Task SendWithRetry_InvalidInput_RefusedNamingFieldNothingWritten()
    {
        await using var h = Harness.Create(server);
        await using var db = await DedicatedDatabase.CreateAsync(server, h, DedicatedDatabase.SignalRetryTests);
        var sender = await db.StartAsync(h, TestIds.New("snd"), "swarm-retry");
        var retrier = new SignalRetrier(sender, Fast());
        var before = await db.Database.ExecuteAsync("DBSIZE");

        var badId = await Assert.ThrowsAsync<Cfn.Coordination.Identity.InvalidIdException>(() => retrier.SendWithRetryAsync("a*b", SignalTypes.Completion, 1));
        var badType = await Assert.ThrowsAsync<Cfn.Coordination.Identity.InvalidIdException>(() => retrier.SendWithRetryAsync("peer", "shout", 1));
        var badRetries = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => retrier.SendWithRetryAsync("peer", SignalTypes.Completion, 1, maxRetries: 11));

        Assert.Equal("receiverId", badId.Field);
        Assert.Equal("signalType", badType.Field);
        Assert.Equal("maxRetries", badRetries.ParamName);
        Assert.Equal((long)before, (long)await db.Database.ExecuteAsync("DBSIZE"));
    }

    [Fact]
    public async Task CoordinatorCleanup_SenderWithRetryKeys_AllGoneAndRunbookScanEmpty()
    {
        await using var h = Harness.Create(server);
        await using var db = await DedicatedDatabase.CreateAsync(server, h, DedicatedDatabase.SignalRetryTests);
        var sender = await db.StartAsync(h, TestIds.New("snd"), "swarm-retry");
        var receiver = await db.StartAsync(h, TestIds.New("rcv"), "swarm-retry");
        var result = await new SignalRetrier(sender, Fast(ackTimeoutMs: 50, maxRetries: 1)).SendWithRetryAsync(receiver.Id, SignalTypes.Completion, 1);
        Assert.True(await db.Database.KeyExistsAsync(Keys.RetryFailedIndex(sender.Id)));
        Assert.True(await db.Database.KeyExistsAsync(Keys.RetryFailed(result.SignalId)));
        Assert.True(await db.Database.KeyExistsAsync(Keys.RetryAttempt(result.SignalId, 2)));

        var cleanup = new CoordinatorCleanup(db.Redis, RecoveryKit.FastOptions(), new RecoveryMetrics(Prometheus.Metrics.NewCustomRegistry()));
        var cleaned = await cleanup.CleanupAsync(sender.Id, force: true);

        Assert.True(cleaned.KeysDeleted >= 4);
        // The runbook's check (#85): redis-cli --scan --pattern "blocking:*{id}*" returns nothing.
        var left = new List<string>();
        await foreach (var key in server.Server.KeysAsync(DedicatedDatabase.SignalRetryTests, $"blocking:*{sender.Id}*", pageSize: 1000))
        {
            left.Add(key!);
        }

        Assert.Empty(left);
        Assert.True(await db.Database.KeyExistsAsync(Keys.Inbox(receiver.Id))); // the receiver's own keys stay
    }
}

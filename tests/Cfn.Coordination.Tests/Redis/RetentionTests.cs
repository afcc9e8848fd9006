using System.Text.Json;
using Cfn.Coordination.Acks;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Security;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Tests.Infrastructure;
using StackExchange.Redis;

namespace Cfn.Coordination.Tests.Redis;

/// <summary>
/// What a finished cycle leaves in Redis, and for how long (SPEC D23), through the real redis-server: idempotency
/// records for the retry window, ACK keys cut to <c>ACK_RETENTION_SECONDS</c> by the waiter once its wait ends (kept
/// at <c>ACK_TTL_SECONDS</c> for a waiter that is not cfn), a completed K10 cut to
/// <c>FINISHED_WORK_RETENTION_SECONDS</c> while its work record keeps the result. The burst test counts keys by family
/// on database 56 (flushed).
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class RetentionTests(RedisServer server)
{
    private const int Db = 56;

    [Fact]
    public void Defaults_RetentionsAreTheDocumentedOnes()
    {
        var o = new CoordinationOptions();
        Assert.Equal(900, o.IdempotencyTtlSeconds);
        Assert.Equal(300, o.AckRetentionSeconds);
        Assert.Equal(3600, o.AckTtlSeconds);
        Assert.Equal(300, o.FinishedWorkRetentionSeconds);
        Assert.Equal(900, o.WorkResultTtlSeconds);
    }

    [Fact]
    public async Task Resend_InsideTheIdempotencyWindow_RecognisedAsADuplicate_NothingWrittenTwice()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiver = await h.StartAsync();

        var first = await sender.Signals.SendAsync(receiver.Id, SignalTypes.Validation, 1, idempotencyKey: "item-7");
        var again = await sender.Signals.SendAsync(receiver.Id, SignalTypes.Validation, 1, idempotencyKey: "item-7");

        Assert.Equal(first.MessageId, again.MessageId);
        Assert.True(again.IsDuplicate);
        Assert.Equal(1, await h.Database.StreamLengthAsync(Keys.Inbox(receiver.Id)));
        // The record lives for the retry window (900 s by default), not a day.
        var ttl = await h.Database.KeyTimeToLiveAsync(Keys.Idempotency(first.MessageId));
        Assert.InRange(ttl!.Value.TotalSeconds, 890, 900);
    }

    [Fact]
    public async Task LateTsAck_ReachesItsCfnWaiter_ThenKeptOnlyForTheRetention()
    {
        await using var h = Harness.Create(server, o =>
        {
            o.AckFallbackPollInterval = TimeSpan.FromMilliseconds(200);
            o.AckRetentionSeconds = 30;
        });
        var self = await h.StartAsync();
        var tsPeer = TestIds.New("ts-coordinator");
        var signalId = TestIds.New("signal");
        var waiting = self.Waiter.WaitForAcksAsync([tsPeer], signalId, TimeSpan.FromSeconds(60));

        // A TS coordinator ACKs two seconds later, as it does: a plain SET with its own one-hour TTL, no wake-up.
        await Task.Delay(TimeSpan.FromSeconds(2));
        Assert.False(waiting.IsCompleted);
        await h.Database.StringSetAsync(Keys.Ack(tsPeer, signalId), TestAcks.SignedJson(h.Keys, tsPeer, signalId), TimeSpan.FromHours(1));
        var result = await waiting.WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(AckWaitStatus.Completed, result.Status);
        // The wait has what it needs: the key goes after the retention (cut without a reply awaited, so asked until seen).
        await EventuallyAsync(async () => (await h.Database.KeyTimeToLiveAsync(Keys.Ack(tsPeer, signalId)))?.TotalSeconds <= 30,
            "the ACK's TTL was never cut to ACK_RETENTION_SECONDS", TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task AckForAWaiterThatIsNotCfn_KeepsAckTtlSeconds()
    {
        // A cfn receiver ACKs a signal of a TS sender: nobody of cfn waits on it, so nothing cuts it; the TS waiter may
        // poll for it as long as ACK_TTL_SECONDS allows.
        await using var h = Harness.Create(server, o => o.AckRetentionSeconds = 30);
        var receiver = await h.StartAsync();
        var tsSender = TestIds.New("ts-coordinator");
        var signalId = TestIds.New("signal");

        await receiver.Acks.AcknowledgeAsync(signalId, tsSender, SignalTypes.Completion, null, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());

        var ttl = await h.Database.KeyTimeToLiveAsync(Keys.Ack(receiver.Id, signalId));
        Assert.InRange(ttl!.Value.TotalSeconds, 3590, 3600);
    }

    [Fact]
    public async Task AckThroughTheInbox_ForACfnSender_WrittenForTheRetention_ForATsSender_ForAckTtl()
    {
        await using var h = Harness.Create(server, o => o.AckRetentionSeconds = 30);
        var receiver = await h.StartAsync();
        var cfnSender = await h.StartAsync();
        var tsSender = TestIds.New("ts-coordinator");
        // A TS coordinator is known by its heartbeat key only (it never writes the registry).
        await h.Database.StringSetAsync(Keys.Heartbeat(tsSender), "{}", TimeSpan.FromMinutes(5));
        var fromCfn = await cfnSender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 1);

        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await foreach (var received in receiver.Inbox.ReadAllAsync(stop.Token))
        {
            break; // read, verified and ACKed by the inbox
        }

        // The inbox's ACK of a signal whose sender is a TS coordinator (the path a TS signal takes once it is in the inbox).
        var tsSignalId = $"{tsSender}:{receiver.Id}:completion:1:{TestIds.New("m")}";
        await receiver.Acks.AcknowledgeAsync(new Signal
        {
            MessageId = tsSignalId, SenderId = tsSender, ReceiverId = receiver.Id, Type = SignalTypes.Completion, Iteration = 1,
            Timestamp = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(),
        }, null, new System.Runtime.CompilerServices.StrongBox<bool>());

        var cfnTtl = await h.Database.KeyTimeToLiveAsync(Keys.Ack(receiver.Id, fromCfn.MessageId));
        Assert.InRange(cfnTtl!.Value.TotalSeconds, 20, 30);
        var tsTtl = await h.Database.KeyTimeToLiveAsync(Keys.Ack(receiver.Id, tsSignalId));
        Assert.InRange(tsTtl!.Value.TotalSeconds, 3590, 3600);
    }

    [Fact]
    public async Task Burst_AfterTheRetentions_KeysLeftAreBoundedByFamily()
    {
        await using var h = Harness.Create(server, o =>
        {
            o.IdempotencyTtlSeconds = 2;
            o.AckRetentionSeconds = 1;
            o.FinishedWorkRetentionSeconds = 1;
        });
        await using var db = await DedicatedDatabase.CreateAsync(server, h, Db);
        var sender = await db.StartAsync(h, TestIds.New("sender"), "swarm-retention");
        var receiver = await db.StartAsync(h, TestIds.New("receiver"), "swarm-retention");
        using var stop = new CancellationTokenSource();
        var receiving = Task.Run(async () =>
        {
            try
            {
                await foreach (var _ in receiver.Inbox.ReadAllAsync(stop.Token))
                {
                    // read, verified and ACKed by the inbox; consumed when the next one is asked for
                }
            }
            catch (OperationCanceledException)
            {
                // the end of the burst
            }
        });

        const int Cycles = 40;
        for (var i = 0; i < Cycles; i++)
        {
            var sent = await sender.Waiter.SendAndWaitAsync(receiver.Id, SignalTypes.Completion, i, timeout: TimeSpan.FromSeconds(20));
            Assert.Equal(AckWaitStatus.Completed, sent.Wait.Status);
        }

        // Work items finished by their owner: the K10 record goes after its retention, the work record stays.
        var workIds = new List<string>();
        for (var i = 0; i < 10; i++)
        {
            var created = await sender.Work.CreateAsync($"item-{i}", JsonSerializer.SerializeToElement(new { i }));
            Assert.True((await sender.Work.CompleteAsync(created.Item!, JsonSerializer.SerializeToElement(new { done = i }))).Succeeded);
            workIds.Add($"item-{i}");
        }

        Assert.Equal(Cycles, await CountAsync(db.Index, "blocking:idempotency:*"));
        Assert.Equal(10, await CountAsync(db.Index, "coordinator:work:*"));

        await Task.Delay(TimeSpan.FromSeconds(3));
        await stop.CancelAsync();
        await receiving;

        Assert.Equal(0, await CountAsync(db.Index, "blocking:idempotency:*"));
        Assert.Equal(0, await CountAsync(db.Index, "blocking:ack:*"));
        Assert.Equal(0, await CountAsync(db.Index, "coordinator:work:*"));
        Assert.True(await db.Database.StreamLengthAsync(Keys.Inbox(receiver.Id)) <= 1, "consumed inbox entries are deleted (the last one with the next read)");
        // What a client may still ask for: every item's result.
        foreach (var workId in workIds)
        {
            Assert.True(await db.Database.HashExistsAsync(Keys.WorkRecord("swarm-retention", workId), "result"), $"{workId}: result kept");
            // The work-owner marker goes with the record (WORK_RESULT_TTL_SECONDS, 900), not an hour after the start.
            var marker = await db.Database.KeyTimeToLiveAsync(Keys.WorkOwner("swarm-retention", workId));
            Assert.InRange(marker!.Value.TotalSeconds, 800, 900);
        }
    }

    private async Task<int> CountAsync(int database, string pattern)
    {
        var count = 0;
        await foreach (var _ in server.Server.KeysAsync(database, pattern, pageSize: 1000))
        {
            count++;
        }

        return count;
    }
}

using Cfn.Coordination.Redis;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Tests.Infrastructure;

namespace Cfn.Coordination.Tests.Redis;

[Collection(RedisCollection.Name)]
public sealed class SendSignalScriptTests(RedisServer server)
{
    [Fact]
    public async Task SendAsync_ReceiverViewHoldsWrongType_FailsWithoutTakingTheIdempotencyRecord()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiver = TestIds.New("recv");
        await h.Database.ListLeftPushAsync(Keys.Signal(receiver), "not a string");

        await Assert.ThrowsAsync<SignalDeliveryException>(() =>
            sender.Signals.SendAsync(receiver, SignalTypes.Completion, 1, idempotencyKey: "k1"));
        var messageId = $"{sender.Id}:{receiver}:completion:1:k1";
        Assert.False(await h.Database.KeyExistsAsync(Keys.Idempotency(messageId)));
        Assert.Equal(1, h.Metrics.SignalsFailed.WithLabels(sender.Id, SignalTypes.Completion, "redis_error").Value);

        // Once the operator removes the bad key, the retry is delivered, not taken for a duplicate.
        await h.Database.KeyDeleteAsync(Keys.Signal(receiver));
        var retry = await sender.Signals.SendAsync(receiver, SignalTypes.Completion, 1, idempotencyKey: "k1");
        Assert.False(retry.IsDuplicate);
        Assert.Equal(1, await h.Database.StreamLengthAsync(Keys.Inbox(receiver)));
    }
}

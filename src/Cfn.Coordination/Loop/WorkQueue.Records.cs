using Cfn.Coordination.Identity;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Work;

// An entry point of the library: public at the namespace root (SPEC D22), its machinery stays in Loop.
namespace Cfn.Coordination;

/// <summary>Following work submitted to a swarm to its result: the work ID's record, read by ID, and a wait for its end.</summary>
public sealed partial class WorkQueue
{
    /// <summary>
    /// What became of <paramref name="workId"/> in <paramref name="swarmId"/> (<see cref="WorkRecord"/>): one
    /// <c>HGETALL</c> of <c>swarm:{swarmId}:work:{workId}</c>. Null when the ID is unknown or its record expired.
    /// </summary>
    /// <exception cref="InvalidIdException">An ID is invalid; nothing was read.</exception>
    public async Task<WorkRecord?> GetRecordAsync(string swarmId, string workId)
    {
        var key = Keys.WorkRecord(swarmId, workId); // validates both IDs
        var entries = await _redis.Database.HashGetAllAsync(key).ConfigureAwait(false);
        return WorkRecord.FromHash(swarmId, workId, entries);
    }

    /// <summary>
    /// Waits until <paramref name="workId"/> is completed or failed and returns its record; after
    /// <paramref name="timeout"/>, returns the record as it is then (<see cref="WorkRecord.IsFinished"/> false). Null when
    /// the ID is unknown (or its record expired). Woken by the notice the completing script publishes
    /// (<c>cfn:work:{swarmId}:{workId}</c>); a lost notice (a broken connection) costs at most one
    /// <see cref="FallbackPoll"/>, the only reads an idle wait makes.
    /// </summary>
    /// <exception cref="InvalidIdException">An ID is invalid; nothing was read.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> fired.</exception>
    public async Task<WorkRecord?> WaitForFinishAsync(string swarmId, string workId, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(timeout, TimeSpan.Zero);
        var waiters = new Waiters(Keys.WorkFinishedChannel(swarmId, workId)); // validates both IDs
        var subscriber = _redis.Multiplexer.GetSubscriber();
        var time = _redis.Time;
        var started = time.GetTimestamp();
        // Subscribed before the first read, so a completion between the read and the wait still wakes it.
        await subscriber.SubscribeAsync(waiters.Channel, waiters.Handler).ConfigureAwait(false);
        try
        {
            while (true)
            {
                var wake = waiters.Next;
                var record = await GetRecordAsync(swarmId, workId).ConfigureAwait(false);
                var left = timeout - time.GetElapsedTime(started);
                if (record is null || record.IsFinished || left <= TimeSpan.Zero)
                {
                    return record;
                }

                try
                {
                    await wake.WaitAsync(left < FallbackPoll ? left : FallbackPoll, time, cancellationToken).ConfigureAwait(false);
                }
                catch (TimeoutException)
                {
                    // the fallback read, or the timeout: the loop reads once more and decides
                }
            }
        }
        finally
        {
            try
            {
                await subscriber.UnsubscribeAsync(waiters.Channel, waiters.Handler).ConfigureAwait(false);
            }
            catch (Exception e) when (e is StackExchange.Redis.RedisException or ObjectDisposedException or TimeoutException)
            {
                // the connection is going away: so is the subscription
            }
        }
    }
}

using StackExchange.Redis;

namespace Cfn.Coordination.Redis;

/// <summary>
/// A coordinator's own keys, built once: every send, ACK, wait and progress write names some of them, and building
/// one (<see cref="Keys"/> checks the ID and concatenates) each time was a string per key per call.
/// </summary>
internal sealed class OwnKeys(string coordinatorId)
{
    /// <summary>The coordinator these keys belong to.</summary>
    public string Id { get; } = coordinatorId;

    /// <summary><see cref="Keys.Activity"/> of <see cref="Id"/>.</summary>
    public RedisKey Activity { get; } = Keys.Activity(coordinatorId);

    /// <summary><see cref="Keys.Epoch"/> of <see cref="Id"/>.</summary>
    public RedisKey Epoch { get; } = Keys.Epoch(coordinatorId);

    /// <summary><see cref="Keys.Unblock"/> of <see cref="Id"/>.</summary>
    public RedisKey Unblock { get; } = Keys.Unblock(coordinatorId);
}

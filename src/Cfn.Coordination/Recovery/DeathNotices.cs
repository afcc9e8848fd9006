using Cfn.Coordination.Identity;
using Cfn.Coordination.Redis;
using StackExchange.Redis;

namespace Cfn.Coordination.Recovery;

/// <summary>
/// C1 message on <c>swarm:{swarmId}:coordinator:dead</c>: <paramref name="DeadCoordinatorId"/> was declared dead, and
/// <paramref name="Action"/> says what comes next (<see cref="SpawnReplacement"/>, <see cref="NoReplacement"/> or
/// <see cref="ReplacementFailed"/>). Waiters follow it (D18); operators may read it with <c>redis-cli psubscribe</c>.
/// </summary>
/// <param name="DeadCoordinatorId">The dead coordinator.</param>
/// <param name="SwarmId">Its swarm (also in the channel name).</param>
/// <param name="Timestamp">When the notice was published, ms.</param>
/// <param name="Action">What happens to the dead coordinator's work and signals.</param>
/// <param name="NewCoordinatorId">The replacement (absent for <see cref="NoReplacement"/>).</param>
/// <param name="Reason">For <see cref="NoReplacement"/>: why (<see cref="AutoEscalationDisabled"/>, <see cref="AgentNotRespawnable"/> or <see cref="StoppedWithRequests"/>); absent in older notices.</param>
internal sealed record DeathNotice(string DeadCoordinatorId, string SwarmId, long Timestamp, string Action, string? NewCoordinatorId = null,
    string? Reason = null)
{
    /// <summary><see cref="NoReplacement"/> because <c>ENABLE_AUTO_ESCALATION=false</c>.</summary>
    public const string AutoEscalationDisabled = "auto_escalation_disabled";

    /// <summary><see cref="NoReplacement"/> because the dead one was an agent run outside cfn (SPEC D21): no host can start it.</summary>
    public const string AgentNotRespawnable = "agent_not_respawnable";

    /// <summary>
    /// <see cref="NoReplacement"/> because a validator stopped gracefully with requests in its inbox: not dead, but
    /// nobody will answer them (a Deployment's next pod has another ID), so its waiters ask other validators.
    /// </summary>
    public const string StoppedWithRequests = "stopped_with_requests";

    /// <summary>Escalated: <see cref="NewCoordinatorId"/> is coming and gets the work and unconsumed signals.</summary>
    public const string SpawnReplacement = "spawn_replacement";

    /// <summary>Nobody takes over (auto-escalation is off, or the dead one was an agent): its waiters get <c>peer_dead</c>.</summary>
    public const string NoReplacement = "no_replacement";

    /// <summary>The replacement <see cref="NewCoordinatorId"/> did not start (spawn failed or timed out).</summary>
    public const string ReplacementFailed = "replacement_failed";
}

/// <summary>Publishing and reading C1 notices: the one definition of their JSON shape.</summary>
internal static class DeathNotices
{
    /// <summary>Publishes <paramref name="notice"/> on its swarm's channel; returns how many subscribers got it.</summary>
    public static Task<long> PublishAsync(IDatabase database, DeathNotice notice) =>
        database.PublishAsync(Keys.SwarmDead(notice.SwarmId), Json.Serialize(notice));

    /// <summary>
    /// Reads a notice: valid IDs, a known action, and a replacement ID exactly when the action names one. Anything else
    /// (an operator's hand-written message, another version's shape) gives false.
    /// </summary>
    public static bool TryParse(string? text, out DeathNotice? notice)
    {
        if (!Json.TryDeserialize(text, out notice, out _) || notice is null || !Ids.IsValidName(notice.DeadCoordinatorId) ||
            !Ids.IsValidName(notice.SwarmId))
        {
            notice = null;
            return false;
        }

        var valid = notice.Action switch
        {
            DeathNotice.SpawnReplacement or DeathNotice.ReplacementFailed => Ids.IsValidName(notice.NewCoordinatorId),
            DeathNotice.NoReplacement => true,
            _ => false,
        };
        notice = valid ? notice : null;
        return valid;
    }
}

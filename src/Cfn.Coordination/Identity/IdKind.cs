namespace Cfn.Coordination.Identity;

/// <summary>The grammar an identifier must follow (D7, SPEC §0.4).</summary>
public enum IdKind
{
    /// <summary>Coordinator, swarm, agent and work IDs: <c>^[A-Za-z0-9_-]{1,64}$</c>.</summary>
    Name,

    /// <summary>Signal and message IDs: <c>:</c>-separated segments of <c>[A-Za-z0-9_-]</c>, at most 256 characters.</summary>
    Signal,
}

namespace Cfn.Coordination;

/// <summary>How an agent that runs outside cfn takes part in a swarm (SPEC D21).</summary>
public enum AgentKind
{
    /// <summary>A program kept alive by <c>cfn agent run</c>, acting through the <c>cfn agent</c> verbs.</summary>
    Shell,

    /// <summary>An HTTP agent session: the agent polls cfn's API, and its session heartbeats for it.</summary>
    Http,
}

/// <summary>The stored form of <see cref="AgentKind"/> in <c>coordinator:agents</c>.</summary>
internal static class AgentKinds
{
    /// <summary>The hash value of <paramref name="kind"/>: <c>shell</c>, <c>http</c>, or empty for no agent.</summary>
    public static string Label(AgentKind? kind) => kind switch
    {
        AgentKind.Shell => "shell",
        AgentKind.Http => "http",
        null => "",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown agent kind"),
    };
}

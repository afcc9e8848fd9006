namespace Cfn.Hosting;

/// <summary>Which roles one cfn process runs (D1): one role for <c>serve --role X</c>, all of them for <c>serve --role all</c> and <c>cfn up</c>.</summary>
internal sealed record ProcessPlan
{
    public static readonly string[] RoleNames = ["coordinator", "validator", "swarm-manager", "timeout-handler", "all"];

    public bool Coordinator { get; init; }

    public bool Validator { get; init; }

    public bool SwarmManager { get; init; }

    public bool TimeoutHandler { get; init; }

    /// <summary>Set by <c>cfn up</c>: the demo swarm it builds.</summary>
    public UpShape? Up { get; init; }

    /// <summary>Address Kestrel binds: every interface for <c>serve</c> (pods), loopback for <c>cfn up</c>.</summary>
    public string BindAddress { get; init; } = "0.0.0.0";

    public string Roles => string.Join(',', new[]
    {
        Coordinator ? "coordinator" : null, Validator ? "validator" : null,
        SwarmManager ? "swarm-manager" : null, TimeoutHandler ? "timeout-handler" : null,
    }.Where(r => r is not null));

    public static ProcessPlan ForRole(string role) => role switch
    {
        "coordinator" => new ProcessPlan { Coordinator = true },
        "validator" => new ProcessPlan { Validator = true },
        "swarm-manager" => new ProcessPlan { SwarmManager = true },
        "timeout-handler" => new ProcessPlan { TimeoutHandler = true },
        "all" => new ProcessPlan { Coordinator = true, Validator = true, SwarmManager = true, TimeoutHandler = true },
        _ => throw new ArgumentException($"unknown role {role}", nameof(role)),
    };
}

/// <summary>The swarm <c>cfn up</c> runs: swarms × coordinators, validators, and a work generator keeping it busy.</summary>
internal sealed record UpShape(int Swarms, int CoordinatorsPerSwarm, int Validators);

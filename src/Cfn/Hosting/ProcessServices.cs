namespace Cfn.Hosting;

/// <summary>Registers a process's parts from its <see cref="ProcessPlan"/> in the host's container.</summary>
internal static class ProcessServices
{
    /// <summary>
    /// The shared <see cref="ProcessRuntime"/> and one hosted service per role. The order of registration is the start
    /// order, its reverse the stop order, which is what makes a graceful stop lose nothing: the demo generator stops
    /// first, then the coordinators and validators here (their loops give work back), the parent side of escalation
    /// and the coordinator host, the swarm manager, the timeout handler, and last the breaker states.
    /// </summary>
    public static IServiceCollection AddRoles(this IServiceCollection services, CfnConfiguration config, ProcessPlan plan)
    {
        services.AddSingleton(config);
        services.AddSingleton(plan);
        services.AddSingleton<ProcessRuntime>();
        services.AddSingleton<IReadinessSource>(sp => sp.GetRequiredService<ProcessRuntime>());
        services.AddRole<BreakerStatesRole>();
        if (plan.TimeoutHandler)
        {
            services.AddRole<TimeoutHandlerRole>();
        }

        if (plan.SwarmManager)
        {
            services.AddRole<SwarmManagerRole>();
            services.AddRole<AgentSessionsRole>();
        }

        if (plan.Coordinator)
        {
            services.AddRole<CoordinatorRole>();
        }

        if (plan.Validator)
        {
            services.AddRole<ValidatorRole>();
        }

        services.AddRole<LocalCoordinatorsRole>();
        if (plan.SwarmManager || plan.TimeoutHandler)
        {
            services.AddRole<LiveViewRole>();
        }

        if (plan.Up is not null)
        {
            services.AddRole<WorkGeneratorRole>();
        }

        return services;
    }

    private static void AddRole<TRole>(this IServiceCollection services)
        where TRole : RoleService
    {
        services.AddSingleton<TRole>();
        // Not AddHostedService: it skips a second registration whose factory returns the same service type.
        services.AddSingleton<IHostedService>(sp => sp.GetRequiredService<TRole>());
    }
}

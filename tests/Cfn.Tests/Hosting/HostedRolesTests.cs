using System.Collections;
using Cfn.Coordination;
using Cfn.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Cfn.Tests.Hosting;

/// <summary>
/// The roles on the real ASP.NET Core host: they start in registration order, stop in the reverse, and a coordinator
/// superseded while a role starts reaches <see cref="CfnProcess"/> (which exits 3) with the later roles not started and
/// the ones that did start (the failing one included, which copes with its partial start) stopped.
/// </summary>
public sealed class HostedRolesTests
{
    private const string Secret = "hosted-roles-secret-0123456789abcdef0123456789abcd";

    [Fact]
    public async Task Host_RolesStartInOrderAndStopInReverse()
    {
        var order = new List<string>();
        await using var app = Build(order, throwing: null);
        await app.StartAsync();
        await app.StopAsync();
        Assert.Equal(["start first", "start second", "start third", "stop third", "stop second", "stop first"], order);
    }

    [Fact]
    public async Task Host_RoleSupersededWhileStarting_CallerSeesItLaterRolesNeverStartStartedOnesStop()
    {
        var order = new List<string>();
        await using var app = Build(order, throwing: "second");
        var e = await Record.ExceptionAsync(() => app.StartAsync());
        Assert.NotNull(e);
        Assert.Equal("coordinator-s", CfnProcess.Superseded(e)?.CoordinatorId);
        await app.StopAsync();
        Assert.Equal(["start first", "start second", "stop second", "stop first"], order);
    }

    private static WebApplication Build(List<string> order, string? throwing)
    {
        var config = CfnConfiguration.Load(new Hashtable { ["BLOCKING_COORDINATION_SECRET"] = Secret });
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Services.AddSingleton(config);
        builder.Services.AddSingleton(ProcessPlan.ForRole("coordinator"));
        builder.Services.AddSingleton<ProcessRuntime>();
        foreach (var name in new[] { "first", "second", "third" })
        {
            builder.Services.AddSingleton<IHostedService>(sp => new RecordingRole(sp.GetRequiredService<ProcessRuntime>(), name, order, name == throwing));
        }

        return builder.Build();
    }

    private sealed class RecordingRole(ProcessRuntime process, string name, List<string> order, bool supersededAtStart) : RoleService(process)
    {
        protected override Task StartRoleAsync(CancellationToken cancellationToken)
        {
            lock (order)
            {
                order.Add("start " + name);
            }

            return supersededAtStart ? throw new CoordinatorSupersededException("coordinator-s", 1, "2") : Task.CompletedTask;
        }

        protected override Task StopRoleAsync()
        {
            lock (order)
            {
                order.Add("stop " + name);
            }

            return Task.CompletedTask;
        }
    }
}

using System.CommandLine;
using Cfn.Hosting;

namespace Cfn.Commands;

/// <summary>
/// <c>cfn serve --role …</c>: a production process (D1; one image, the runbook's Deployments and StatefulSet) configured
/// by its environment (SPEC §3.6), serving HTTP on <c>HTTP_PORT</c> (8080). An invalid configuration stops it with one
/// line naming the variable and exit code 2, so a bad rollout shows up as a crash loop (SPEC §5 #9).
/// </summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var role = new Option<string>("--role")
        {
            Description = "coordinator | validator | swarm-manager | timeout-handler | all (every role in one process)",
            Required = true,
        };
        role.AcceptOnlyFromAmong(ProcessPlan.RoleNames);
        var command = new Command("serve", "Run one role as a long-lived process (configured by environment variables, HTTP on HTTP_PORT).") { role };
        command.SetAction(async (result, cancellationToken) => await RunAsync(result.GetValue(role)!, cancellationToken).ConfigureAwait(false));
        return command;
    }

    private static async Task<int> RunAsync(string role, CancellationToken cancellationToken)
    {
        CfnConfiguration config;
        try
        {
            config = CfnConfiguration.Load();
        }
        catch (CfnConfigurationException e)
        {
            await Console.Error.WriteLineAsync("configuration error: " + e.Message).ConfigureAwait(false);
            return 2;
        }

        return await new CfnProcess(config, ProcessPlan.ForRole(role)).RunAsync(cancellationToken).ConfigureAwait(false);
    }
}

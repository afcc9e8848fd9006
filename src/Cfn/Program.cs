// cfn: the blocking-coordination system's one executable (D1). Sub-commands arrive with their issues; today: cleanup, status, serve --role timeout-handler.
using System.CommandLine;
using Cfn.Commands;

var root = new RootCommand("cfn: blocking coordination for agent swarms (runbook: docs/architecture.md)")
{
    CleanupCommand.Create(),
    StatusCommand.Create(),
    ServeCommand.Create(),
};

var parsed = root.Parse(args);
if (parsed.Errors.Count > 0)
{
    // Usage errors exit 2, as the legacy cleanup script did for an unknown option.
    foreach (var error in parsed.Errors)
    {
        await Console.Error.WriteLineAsync(error.Message);
    }

    await Console.Error.WriteLineAsync("Run 'cfn --help' or 'cfn <command> --help' for usage.");
    return 2;
}

return await parsed.InvokeAsync();

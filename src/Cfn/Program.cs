// cfn: the blocking-coordination system's one executable (D1): up, serve, cleanup, status, agent, work.
using System.CommandLine;
using Cfn.Commands;

var root = new RootCommand("cfn: blocking coordination for agent swarms (runbook: docs/runbook.md)")
{
    UpCommand.Create(),
    ServeCommand.Create(),
    CleanupCommand.Create(),
    StatusCommand.Create(),
    AgentCommand.Create(),
    WorkCommand.Create(),
};

// No response files: `--input @FILE` and `--payload @FILE` name a JSON file the command reads whole, which the parser's
// response-file expansion would otherwise split into tokens (or refuse when the file is missing).
var parsed = root.Parse(args, new ParserConfiguration { ResponseFileTokenReplacer = null });
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

// SIGTERM/SIGINT cancel the command's token; a graceful stop takes at most about 10 s (a pod's termination grace period is 30 s by default: SPEC §3.7).
return await parsed.InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = TimeSpan.FromSeconds(12) });

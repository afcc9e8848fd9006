using Cfn.Tests.Infrastructure;

namespace Cfn.Tests.Commands;

/// <summary><c>cfn --help</c>: the root description points operators at the runbook that exists in the repository.</summary>
public sealed class HelpCommandTests
{
    [Fact]
    public async Task Help_RootDescription_NamesTheRunbookFile()
    {
        await using var cfn = CfnRun.Start(["--help"]);
        Assert.Equal(0, await cfn.WaitForExitAsync(TimeSpan.FromSeconds(60)));

        var line = Assert.Single(cfn.Lines, l => l.Contains("runbook:", StringComparison.Ordinal));
        Assert.Contains("(runbook: docs/runbook.md)", line, StringComparison.Ordinal);
        var root = new DirectoryInfo(AppContext.BaseDirectory);
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "cfn.slnx")))
        {
            root = root.Parent;
        }

        Assert.NotNull(root);
        Assert.True(File.Exists(Path.Combine(root.FullName, "docs", "runbook.md")));
    }
}

using System.Text.Json;
using System.Text.RegularExpressions;
using static Cfn.Tests.Deploy.RulesTooling;

namespace Cfn.Tests.Deploy;

/// <summary>
/// The Dockerfile, read instruction by instruction: what the runbook needs of the image. Building it takes minutes
/// (scripts/build-image.sh, its own command, which also runs the image's programs under chroot); this is the fast check
/// that runs with every test.
/// </summary>
public sealed partial class DockerfileTests
{
    /// <summary>The packages whose programs the runbook's steps run inside a pod.</summary>
    private static readonly string[] RunbookPackages = ["curl", "redis-tools", "jq", "procps", "iputils-ping", "mtr-tiny", "dnsutils"];

    [Fact]
    public void Dockerfile_MultiStageDebianAspNetRuntimeWithTheRunbooksTools()
    {
        var instructions = Instructions(Read("Dockerfile"));
        var froms = instructions.Where(i => i.Keyword == "FROM").Select(i => i.Arguments).ToList();
        Assert.Contains(froms, f => f.StartsWith("${SDK_IMAGE} AS build", StringComparison.Ordinal));
        Assert.Contains(froms, f => f.StartsWith("${RUNTIME_IMAGE} AS runtime", StringComparison.Ordinal));
        Assert.Matches(@"^mcr\.microsoft\.com/dotnet/sdk:10\.0", Arg(instructions, "SDK_IMAGE"));
        // The ASP.NET runtime (cfn is a web app) on Debian (apt-get, and the runbook's programs), not chiseled/distroless.
        Assert.Matches(@"^mcr\.microsoft\.com/dotnet/aspnet:10\.0-(bookworm|trixie)-slim$", Arg(instructions, "RUNTIME_IMAGE"));

        var packages = Arg(instructions, "RUNBOOK_PACKAGES").Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(RunbookPackages.Order(), packages.Order());
        var install = Assert.Single(instructions, i => i.Keyword == "RUN" && i.Arguments.Contains("apt-get install", StringComparison.Ordinal));
        Assert.Contains("${RUNBOOK_PACKAGES}", install.Arguments, StringComparison.Ordinal);
        Assert.Contains("useradd --uid 10001", install.Arguments, StringComparison.Ordinal);
        Assert.Contains(instructions, i => i.Keyword == "RUN" && i.Arguments.Contains("dotnet publish src/Cfn/Cfn.csproj", StringComparison.Ordinal));
    }

    [Fact]
    public void Dockerfile_FinalStage_NonRootSigtermHealthcheckAndCfnAsPidOne()
    {
        var instructions = Instructions(Read("Dockerfile"));
        var lastFrom = instructions.FindLastIndex(i => i.Keyword == "FROM");
        var final = instructions.Skip(lastFrom).ToList();
        Assert.Equal("${RUNTIME_FROM}", final[0].Arguments);

        var user = Assert.Single(final, i => i.Keyword == "USER").Arguments;
        Assert.Matches("^[1-9][0-9]*(:[0-9]+)?$", user); // numeric and not 0, so runAsNonRoot can check it
        Assert.Equal("SIGTERM", Assert.Single(final, i => i.Keyword == "STOPSIGNAL").Arguments);
        var health = Assert.Single(final, i => i.Keyword == "HEALTHCHECK").Arguments;
        Assert.Matches(@"CMD curl -fsS ""http://127\.0\.0\.1:\$\{HTTP_PORT:-8080\}/health/live""", health);

        // Exec form (a JSON array): cfn is PID 1 itself, with no shell in between to swallow SIGQUIT (`kill -3 1`).
        var entrypoint = Assert.Single(final, i => i.Keyword == "ENTRYPOINT").Arguments;
        Assert.Equal(["/app/cfn"], JsonSerializer.Deserialize<string[]>(entrypoint)!);
        Assert.Equal(["serve", "--role", "all"], JsonSerializer.Deserialize<string[]>(Assert.Single(final, i => i.Keyword == "CMD").Arguments)!);
        Assert.Contains(final, i => i.Keyword == "COPY" && i.Arguments == "--from=app /out/app /app");
    }

    [Fact]
    public void BuildScript_TakesThePackagesFromTheDockerfile()
    {
        // One list: the local path's debootstrap reads RUNBOOK_PACKAGES from the Dockerfile rather than a copy of it.
        var script = Read("scripts/build-image.sh");
        Assert.Contains("PACKAGES=$(arg RUNBOOK_PACKAGES)", script, StringComparison.Ordinal);
        Assert.Contains("--build-arg APP_FROM=prebuilt --build-arg RUNTIME_FROM=prepared", script, StringComparison.Ordinal);
        var stages = Instructions(Read("Dockerfile")).Where(i => i.Keyword == "FROM").Select(i => i.Arguments.Split(" AS ").Last()).ToList();
        Assert.Contains("prebuilt", stages);
        Assert.Contains("prepared", stages);
    }

    private static string Arg(List<(string Keyword, string Arguments)> instructions, string name)
    {
        var arg = Assert.Single(instructions, i => i.Keyword == "ARG" && i.Arguments.StartsWith(name + "=", StringComparison.Ordinal)).Arguments;
        return arg[(name.Length + 1)..].Trim('"');
    }

    /// <summary>The Dockerfile's instructions, continuation lines joined and comments dropped.</summary>
    private static List<(string Keyword, string Arguments)> Instructions(string dockerfile)
    {
        var result = new List<(string, string)>();
        var pending = "";
        foreach (var raw in dockerfile.Split('\n'))
        {
            var line = raw.TrimEnd();
            if (line.TrimStart().StartsWith('#'))
            {
                continue;
            }

            if (line.EndsWith('\\'))
            {
                pending += line[..^1] + " ";
                continue;
            }

            var full = (pending + line).Trim();
            pending = "";
            if (full.Length == 0)
            {
                continue;
            }

            var m = Instruction().Match(full);
            Assert.True(m.Success, "not an instruction: " + full);
            result.Add((m.Groups[1].Value.ToUpperInvariant(), Spaces().Replace(m.Groups[2].Value.Trim(), " ")));
        }

        return result;
    }

    [GeneratedRegex(@"^([A-Za-z]+)\s+(.*)$")]
    private static partial Regex Instruction();

    [GeneratedRegex(@"\s+")]
    private static partial Regex Spaces();
}

using Cfn.Coordination.Acks;
using Cfn.Coordination.Tests.Infrastructure;
using Cfn.Examples;

namespace Cfn.Coordination.Tests.Examples;

/// <summary>
/// The README's library sample is the code of <see cref="QuickStart"/>: the README block must match it line for line
/// (so the README shows code that compiles against today's API), and run against a real redis-server it completes its wait.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class QuickStartTests(RedisServer server)
{
    private const int Db = 36; // its IDs are the README's fixed names: a database of its own

    [Fact]
    public void ReadmeSample_IsTheCompiledExample()
    {
        var root = RepositoryRoot();
        var source = File.ReadAllLines(Path.Combine(root, "examples", "Cfn.Examples", "QuickStart.cs"));
        var begin = Array.FindIndex(source, l => l.Trim() == "// README:begin");
        var end = Array.FindIndex(source, l => l.Trim() == "// README:end");
        Assert.True(begin >= 0 && end > begin, "QuickStart.cs has no README markers");
        var indent = source[begin].Length - source[begin].TrimStart().Length;
        var expected = source[(begin + 1)..end].Select(l => l.Length >= indent ? l[indent..] : l.TrimStart()).ToList();

        var readme = File.ReadAllLines(Path.Combine(root, "README.md"));
        var heading = Array.FindIndex(readme, l => l.StartsWith("## Using the library", StringComparison.Ordinal));
        Assert.True(heading >= 0, "README has no 'Using the library' section");
        var open = Array.FindIndex(readme, heading, l => l == "```csharp");
        var close = Array.FindIndex(readme, open + 1, l => l == "```");
        Assert.True(open > heading && close > open, "the section has no csharp block");
        Assert.Equal(expected, readme[(open + 1)..close]);
    }

    [Fact]
    public async Task Sample_AgainstRealRedis_CompletesItsWait()
    {
        await server.Multiplexer.GetServer(server.Multiplexer.GetEndPoints()[0]).FlushDatabaseAsync(Db);
        if (string.IsNullOrEmpty(Environment.GetEnvironmentVariable("BLOCKING_COORDINATION_SECRET")))
        {
            // The sample reads the secret as a user's process would; nothing else in this test process reads it.
            Environment.SetEnvironmentVariable("BLOCKING_COORDINATION_SECRET", "quickstart-test-secret-0123456789abcdef");
        }

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var result = await QuickStart.RunAsync($"{server.Endpoint},defaultDatabase={Db}", timeout.Token);

        Assert.Equal(AckWaitStatus.Completed, result.Status);
        Assert.Equal(["validator-1"], result.Acks.Keys);
        Assert.Empty(result.Missing);
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "cfn.slnx")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("cfn.slnx not found above " + AppContext.BaseDirectory);
    }
}

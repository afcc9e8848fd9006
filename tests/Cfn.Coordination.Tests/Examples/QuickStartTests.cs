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
    public void ReadmeSample_IsTheCompiledExample() =>
        Assert.Equal(ExampleSources.Region("QuickStart.cs", "README"), ExampleSources.CSharpBlock("README.md", "## Using the library"));

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
}
